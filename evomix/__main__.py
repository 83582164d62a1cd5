"""``python -m evomix``: the command line."""
from evomix.cli import main

main()
