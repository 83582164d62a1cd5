from evomix.cli import main

main()
