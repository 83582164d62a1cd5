"""What this process may run on: its cores, and BLAS held to one thread where threads are the parallelism."""
from __future__ import annotations

import os

from threadpoolctl import ThreadpoolController

_BLAS: ThreadpoolController | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` limit), int >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def single_threaded_blas():
    """Context manager that holds BLAS to one thread (threadpoolctl).

    The libraries are looked up once per process (the lookup reads the process's memory map,
    ~1 ms, which would otherwise be paid every generation).
    """
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")
