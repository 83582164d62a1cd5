"""Synthetic songs with a designed balance, for the demo, the tests and the experiments."""
