"""Compiled loops (numba) for the few places where numpy needs many passes or a Python loop.

numpy is fast per pass but a chain of elementwise steps (the compressor's gain computer, a time
recursion) makes one temporary array per step; compiled, the chain is one pass over memory that
LLVM vectorizes, and it releases the GIL so the fast tier's threads run it in parallel.

:func:`lazy_njit` compiles a plain Python function on its first call, not at import (importing
evomix stays cheap), with numba's on-disk cache where a writable cache location exists; on a
read-only install without one it compiles once per process instead.
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
