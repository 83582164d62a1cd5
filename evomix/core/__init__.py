"""The leaf layer: the contract that ``evomix.engine`` and ``objectives`` share.

``features``  :class:`~evomix.core.features.Features`, what a rendered batch hands the objectives
``meter``     BS.1770-4 / EBU R 128 loudness and true-peak meters, vectorized over a population
``compiled``  :func:`~evomix.core.compiled.lazy_njit`, numba compiled on first call
``constants`` numbers shared across modules, each defined once (power floor, BS.1770 gating block)

These modules import numpy, scipy, numba, the standard library, ``evomix.errors`` (itself a leaf)
and each other, never ``evomix.engine`` or ``objectives``, so both of those import this layer and
neither reaches across to the other (``tests/test_imports.py`` checks it). This file imports
nothing: ``from evomix.core.meter import ...`` loads only what it names.
"""
