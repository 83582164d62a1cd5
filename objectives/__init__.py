"""Fitness functions for evomix: each scores rendered mix features, lower is better.

Importing the package registers the five objectives in :data:`REGISTRY`: the four searched by
default, ``masking``, ``loudness``, ``balance``, ``genre``, and ``reference`` (active with a same-song
reference).
"""
from evomix.core.features import Features
from objectives import balance, genre, loudness, masking, reference  # noqa: F401  (registration)
from objectives.base import DEFAULT_OBJECTIVES, REGISTRY, Objective, Target, evaluate, parse_weights, register
from objectives.genre import GenreProfile, builtin_genres, load_profile

OBJECTIVE_NAMES = DEFAULT_OBJECTIVES  # the four searched by default; "reference" joins with --reference
ALL_OBJECTIVES = DEFAULT_OBJECTIVES + ("reference",)  # a fixed order: the columns of F and front.json
if set(ALL_OBJECTIVES) != set(REGISTRY):  # a new objective must be given its column
    raise RuntimeError(f"ALL_OBJECTIVES {ALL_OBJECTIVES} does not list the registry {tuple(REGISTRY)}")

__all__ = [
    "REGISTRY", "OBJECTIVE_NAMES", "ALL_OBJECTIVES", "DEFAULT_OBJECTIVES", "Features", "Objective", "Target",
    "evaluate", "parse_weights", "register", "GenreProfile", "builtin_genres", "load_profile",
]
