"""Compiled loops (numba) for the few places where numpy needs many passes or a Python loop.

numpy is fast per pass but a chain of elementwise steps (the compressor's gain computer, a time
recursion) makes one temporary array per step; compiled, the chain is one pass over memory that
LLVM vectorizes, and it releases the GIL so the fast tier's threads run it in parallel.

:func:`lazy_njit` compiles a plain Python function on its first call, not at import (importing
evomix stays cheap), with numba's on-disk cache where a writable cache location exists; on a
read-only install without one it compiles once per process instead. :func:`inline_njit` marks a
small piece several kernels share (one biquad step, say): numba inlines it into each kernel that calls
it, so the kernels keep their speed without repeating its lines.
"""
from __future__ import annotations

import functools


def lazy_njit(func=None, *, fastmath=False):
    """``numba.njit(nogil=True)`` of ``func``, compiled on first call (cached on disk if possible).

    The loop must give the same result as the numpy expression it replaces (the tests compare
    them). Without ``fastmath`` the arithmetic is IEEE in the written order. ``fastmath`` may be a
    set of LLVM flags, e.g. ``{"reassoc"}`` to let a dot product's sum run in SIMD lanes: the order
    then depends on the loop's length only, so a row's result still does not depend on how the
    rows are batched.
    """
    if func is None:
        return lambda f: lazy_njit(f, fastmath=fastmath)
    compiled = None

    @functools.wraps(func)
    def call(*args):
        nonlocal compiled
        if compiled is None:
            import numba  # not at the top: importing numba is slow, paid only by a process that runs a kernel

            try:
                compiled = numba.njit(cache=True, nogil=True, fastmath=fastmath)(func)
            except RuntimeError:  # no writable cache location (read-only install, no home)
                compiled = numba.njit(cache=False, nogil=True, fastmath=fastmath)(func)
        return compiled(*args)

    call.py_func = func  # the uncompiled loop, for tests
    return call


class _Inlined:
    """A plain function that numba inlines where a kernel calls it (:func:`inline_njit`).

    numba's untyped inlining pass takes any global with a dispatcher's ``targetoptions`` and
    ``py_func`` and inlines ``py_func`` into the caller's IR; ``_numba_type_`` types the global itself
    (its load stays in the caller's IR) as the dispatcher ``numba.njit(inline="always")`` of it, made
    when a kernel first compiles. Called from Python it is the plain function.
    """

    targetoptions = {"inline": "always"}

    def __init__(self, func):
        functools.update_wrapper(self, func)
        self.py_func = func
        self._dispatcher = None

    def __call__(self, *args):
        return self.py_func(*args)

    @property
    def _numba_type_(self):
        import numba  # only asked for while numba compiles a kernel that calls this

        if self._dispatcher is None:
            self._dispatcher = numba.njit(inline="always")(self.py_func)
        return numba.typeof(self._dispatcher)


def inline_njit(func):
    """``func`` for the :func:`lazy_njit` kernels to call, inlined into each (``numba.njit(inline="always")``).

    Lets kernels share a small step written once (a biquad section, a state flush): inlined, it is
    the same arithmetic in the same order as the step written out in place, and as fast, though the
    register allocation can differ, so time a kernel after changing how it calls one
    (``engine.chain._flushed`` is written for that). A kernel's on-disk cache does not see a change
    to a helper in another file, so a helper lives in the module of the kernels that call it.
    """
    return _Inlined(func)
