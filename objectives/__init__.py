"""Fitness functions for evomix: each scores rendered mix features, lower is better.

Importing the package registers the four objectives in :data:`REGISTRY`:
``masking``, ``loudness``, ``balance``, ``genre``.
"""
from objectives.base import REGISTRY, Features, Objective, Target, evaluate, parse_weights, register
from objectives import masking, loudness, balance, genre  # noqa: F401  (registration)
from objectives.genre import GenreProfile, builtin_genres, load_profile

OBJECTIVE_NAMES = tuple(REGISTRY)

__all__ = [
    "REGISTRY", "OBJECTIVE_NAMES", "Features", "Objective", "Target", "evaluate", "parse_weights",
    "register", "GenreProfile", "builtin_genres", "load_profile",
]
