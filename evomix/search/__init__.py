"""The search: gene table, constraints, the Problem that scores genomes, the evolutionary loop and its checkpoints."""
