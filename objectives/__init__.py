"""Fitness functions for evomix: each scores rendered mix features, lower is better.

Importing the package registers the four objectives in :data:`REGISTRY`:
``masking``, ``loudness``, ``balance``, ``genre`` and ``reference`` (active with a same-song reference).
"""
from evomix.core.features import Features
from objectives.base import REGISTRY, Objective, Target, evaluate, parse_weights, register
from objectives import masking, loudness, balance, genre, reference  # noqa: F401  (registration)
from objectives.genre import GenreProfile, builtin_genres, load_profile

from objectives.base import DEFAULT_OBJECTIVES

OBJECTIVE_NAMES = DEFAULT_OBJECTIVES  # the four searched by default; "reference" joins with --reference
ALL_OBJECTIVES = tuple(REGISTRY)

__all__ = [
    "REGISTRY", "OBJECTIVE_NAMES", "ALL_OBJECTIVES", "DEFAULT_OBJECTIVES", "Features", "Objective", "Target", "evaluate", "parse_weights",
    "register", "GenreProfile", "builtin_genres", "load_profile",
]
