"""Distributing ``Problem.evaluate_population`` over local processes or a dask cluster.

:class:`ParallelEvaluator` is a drop-in for ``problem.evaluate_population`` in
:func:`~evomix.search.algorithm.run_search`: ``genomes (n, genes) -> F (n, n_obj)``, the same values
bit for bit whatever the backend and the number of workers.

What travels, and when
----------------------
The :class:`~evomix.search.problem.Problem` (its ``Analysis`` is tens to hundreds of MB) goes to each
worker **once per run**; every generation only sends genomes (a few kB) and receives F.

- ``backend="local", n_jobs=1``: a call in this process, the population split over ``threads``
  threads (default: every core this process may use); no process is started.
- ``backend="local", n_jobs=N``: each worker process scores its piece on ``threads // N`` threads.
  The Problem is written once with ``joblib.dump`` to a temporary
  file; each worker process of a persistent joblib/loky pool maps it read-only
  (``joblib.load(path, mmap_mode="r")``) on its first task and keeps it for the run (module-level
  cache keyed by the path). The file is removed by :meth:`ParallelEvaluator.close`.
- ``backend="dask"``: the Problem is sent once with ``client.scatter(..., broadcast=True)`` to every
  worker of the cluster (no shared filesystem needed); tasks get it by its key from worker memory.

Determinism
-----------
A genome's F depends only on the block of ``evomix.search.problem.block_size`` genomes it is rendered in
(blocks are counted from the population's first row). :func:`split` cuts a population into pieces
of whole blocks, one per thread or worker, so every block is rendered exactly as in a single call
and the concatenated F is bitwise the same for any number of threads, jobs or dask workers.
The search lends its own generator states to Python's ``random`` only while DEAP draws, never
while scoring (:mod:`evomix.search.algorithm`), so nothing here can change its sequence; dask's
client draws from ``random`` too (to sample payloads before compressing them), so a distributed
call restores the state it found: the caller's sequence does not depend on the backend either.
"""
from __future__ import annotations

import asyncio
import os
import pickle
import random
import shutil
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import numpy as np

import evomix
from evomix.core.runtime import available_cores, single_threaded_blas
from evomix.errors import EvomixError, OptionError, ParameterError
from evomix.search.problem import BLOCK

BACKENDS = ("local", "dask")
CONNECT_TIMEOUT_S = 10.0  # connecting to a dask scheduler, and waiting for its first worker


_THREAD_POOLS: dict = {}  # extra threads -> ThreadPoolExecutor, kept for the process (one per size)


def score(problem, genomes: np.ndarray, threads: int = 1) -> np.ndarray:
    """``problem.evaluate_population(genomes)`` on ``threads`` threads of this process.

    With ``threads`` > 1 the population is split into pieces of whole blocks (:func:`split`),
    scored concurrently (numpy, BLAS and the compiled loops release the GIL for the large array
    operations that dominate) and put back in order: bitwise the same F as one thread. BLAS is
    held to one thread meanwhile: the threads are the parallelism.
    """
    genomes = np.atleast_2d(np.asarray(genomes, dtype=float))
    pieces = split(genomes, threads, _block_of(problem)) if threads > 1 else [genomes]
    with single_threaded_blas():
        if len(pieces) == 1:
            return problem.weighted_scores(genomes)
        pool = _THREAD_POOLS.get(len(pieces) - 1)  # this thread scores the first piece itself
        if pool is None:
            pool = _THREAD_POOLS[len(pieces) - 1] = ThreadPoolExecutor(len(pieces) - 1,
                                                                       thread_name_prefix="evomix-score")
        others = [pool.submit(problem.weighted_scores, p) for p in pieces[1:]]
        first = problem.weighted_scores(pieces[0])
        return np.concatenate([first] + [f.result() for f in others], axis=0)


def _block_of(problem) -> int:
    """The problem's block size (``evaluate.block_size``; ``BLOCK`` for a problem without one)."""
    return int(getattr(problem, "block", BLOCK))


def split(genomes: np.ndarray, parts: int, block: int = BLOCK) -> list[np.ndarray]:
    """Contiguous pieces of ``genomes`` (n, genes) for up to ``parts`` workers, each made of whole
    blocks of ``block`` genomes (the problem's ``block``, ``evaluate.block_size``; the last block may
    be shorter), block counts differing by at most one. A population of one block is one piece."""
    n = genomes.shape[0]
    n_blocks = -(-n // block)
    parts = max(1, min(int(parts), n_blocks))
    edges = np.cumsum([0] + [len(b) for b in np.array_split(np.arange(n_blocks), parts)]) * block  # block boundaries
    return [genomes[a : min(b, n)] for a, b in zip(edges[:-1], edges[1:])]


def check_options(n_jobs, backend, scheduler, threads=None) -> None:
    """Validate ``--jobs``, ``--backend``, ``--scheduler`` and ``--threads`` (no connection is made).

    Raises
    ------
    ParameterError
        jobs or threads not a whole number >= 1; unknown backend; dask without a scheduler address (or a
        scheduler without dask); ``--jobs`` with dask; dask.distributed not installed.
    """
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool) or n_jobs < 1:
        raise OptionError(lambda k: f"{k('jobs')} must be a whole number >= 1, got {n_jobs!r}")
    if threads is not None and (not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1):
        raise OptionError(lambda k: f"{k('threads')} must be a whole number >= 1, got {threads!r}")
    if backend not in BACKENDS:
        raise OptionError(lambda k: f"{k('backend')}: unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "local":
        if scheduler:
            raise OptionError(lambda k: f"{k('scheduler')} is for {k('backend')} dask; "
                                        f"add {k('backend')} dask to use the cluster")
        return
    if not scheduler:
        raise OptionError(lambda k: f"{k('backend')} dask needs {k('scheduler')} ADDRESS (e.g. tcp://10.0.0.5:8786)")
    if n_jobs != 1:
        raise OptionError(lambda k: f"{k('jobs')} is for {k('backend')} local; "
                                    f"with {k('backend')} dask every worker thread of the cluster takes a share")
    try:
        import distributed  # noqa: F401  (optional dependency, evomix[dask]: is it installed?)
    except ImportError:
        raise ParameterError('--backend dask needs dask.distributed: pip install "evomix[dask]"') from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


async def _probe(address: str, timeout: float) -> None:
    from distributed.comm import connect as comm_connect  # optional dependency (evomix[dask])

    comm = await comm_connect(address, timeout=timeout)
    await comm.close()


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` on the scheduler at ``address`` with at least one worker.

    Raises
    ------
    ParameterError
        the scheduler cannot be reached within ``timeout`` s (default ``CONNECT_TIMEOUT_S``), no
        worker joins it within that time, or a worker lacks this version of evomix.
    """
    from distributed import Client  # optional dependency (evomix[dask])

    timeout = CONNECT_TIMEOUT_S if timeout is None else float(timeout)
    try:  # probe first: a Client that fails to connect leaves noise on stderr when collected
        with ThreadPoolExecutor(1) as pool:  # own thread: works under a running event loop (notebooks)
            pool.submit(asyncio.run, _probe(address, timeout)).result()
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as e:  # OSError / TimeoutError (unreachable), ValueError (malformed address), ...
        why = _one_line(e)
        raise OptionError(lambda k: f"{k('scheduler')}: cannot reach the dask scheduler at {address} "
                                    f"within {timeout:g} s ({why})") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except Exception:
            raise OptionError(lambda k: f"{k('scheduler')}: no dask worker is connected to {address} (start one with "
                                        f"'dask worker {address}' on a machine with evomix installed)") from None
        found = client.run(version, "evomix", on_error="return")
        bad = sorted(w for w, v in found.items() if v != evomix.__version__)
        if bad:
            seen = found[bad[0]]
            seen = f"evomix {seen}" if isinstance(seen, str) else "no evomix"
            raise OptionError(lambda k: f"{k('scheduler')}: dask worker(s) {', '.join(bad)} at {address} have {seen}; "
                                 f"install evomix {evomix.__version__} (with its dask extra) on every worker")
    except BaseException:
        client.close()
        raise
    return client


_LOADED: dict = {}  # per worker process: path -> the Problem loaded from it (the current run's only)


def _array_bytes(obj, depth: int = 3) -> int:
    """Total size of the numpy arrays held by ``obj`` (a dataclass tree), without pickling it."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if depth == 0 or not hasattr(obj, "__dict__") and not hasattr(obj, "__dataclass_fields__"):
        return 0
    names = getattr(obj, "__dataclass_fields__", None) or vars(obj)
    return sum(_array_bytes(getattr(obj, n, None), depth - 1) for n in names)


def _worker() -> str:
    """The process running this, as ``"host:pid"``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _evaluate_file(path: str, genomes: np.ndarray, threads: int = 1):
    """Worker task (local backend): score ``genomes`` with the Problem dumped at ``path``, loaded by
    this process's first task of the run. Returns F and ``(worker, 1 if this task loaded it else 0)``."""
    problem = _LOADED.get(path)
    loaded = problem is None
    if loaded:
        _LOADED.clear()  # a previous run's Problem: drop it
        import joblib  # in worker processes only; the serial path never loads joblib (~0.1 s)

        problem = _LOADED[path] = joblib.load(path, mmap_mode="r")
    return score(problem, genomes, threads), (_worker(), int(loaded))


def _ignore_sigint() -> None:
    """Initializer of each local worker process: ignore Ctrl-C. A terminal sends SIGINT to the whole
    process group; a worker interrupted mid-task (or idle: loky then calls the pool broken) would
    abort the run, where the parent decides (``evomix.search.interrupt``: finish the generation, or abort
    and stop the workers)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _evaluate_scattered(problem, genomes: np.ndarray):
    """Worker task (dask backend): ``problem`` is resolved from the worker's memory, where
    :meth:`ParallelEvaluator.ship` sent it (no task loads it: 0)."""
    return score(problem, genomes), (_worker(), 0)


class ParallelEvaluator:
    """``genomes (n, genes) -> F (n, n_obj)`` for a Problem, on local processes or a dask cluster.

    >>> with ParallelEvaluator(problem, n_jobs=2) as evaluate:
    ...     result = run_search(evaluate, initial, termination=Termination(generations=30), seed=0)

    The options are checked and a dask scheduler is connected to when the evaluator is created
    (``problem`` may then be None and given later with :meth:`ship`, so that a bad address fails
    before any audio is loaded). :meth:`close` (or leaving the ``with`` block) stops using the
    pool, removes the temporary file and disconnects from the scheduler.

    Attributes
    ----------
    loads : {"host:pid" of a worker that scored: times a task there had to load the Problem}; local:
        1 each (the dump file is read by a process's first task of the run); dask: 0 each
        (:meth:`ship` sent the Problem to every worker's memory).
    payload_bytes : pickled size of what the last call sent (genome pieces and the Problem's
        path or key); ``problem_bytes`` : size of the Problem as shipped (local: the dump file;
        dask: its arrays; 0 when it stays in this process).
    """

    def __init__(self, problem=None, *, n_jobs: int = 1, backend: str = "local", scheduler: str | None = None,
                 timeout: float | None = None, threads: int | None = None):
        check_options(n_jobs, backend, scheduler, threads)
        self.n_jobs, self.backend, self.scheduler = int(n_jobs), backend, scheduler
        total = available_cores() if threads is None else int(threads)
        self.threads = 1 if backend == "dask" else max(1, total // self.n_jobs)  # per process
        self.problem = None
        self.loads: dict = {}
        self.payload_bytes = 0
        self.problem_bytes = 0
        self._dir = self._path = self._pool = None
        self._client = self._future = None
        if backend == "dask":
            self._client = connect(scheduler, timeout)
        if problem is not None:
            self.ship(problem)

    @property
    def spawns(self) -> bool:
        """Whether evaluation runs outside this process."""
        return self.backend == "dask" or self.n_jobs > 1

    def ship(self, problem) -> ParallelEvaluator:
        """Send ``problem`` to the workers (once); returns self."""
        if self.problem is not None:
            raise EvomixError("ParallelEvaluator.ship: a Problem was already shipped; use a new evaluator")
        self.problem = problem
        if not self.spawns:
            return self
        if self.backend == "local":
            import joblib  # only when workers are spawned (--jobs > 1): the serial path never loads it

            self._dir = tempfile.mkdtemp(prefix="evomix-problem-")
            self._path = os.path.join(self._dir, "problem.joblib")
            try:
                joblib.dump(problem, self._path)
            except OSError as e:
                self.close()
                raise EvomixError(f"--jobs: cannot write the session analysis for the workers to "
                                  f"{tempfile.gettempdir()} "
                                  f"({_one_line(e)}); point TMPDIR at a folder with room") from None
            self.problem_bytes = os.path.getsize(self._path)
            self._pool = joblib.Parallel(n_jobs=self.n_jobs, backend="loky", batch_size=1, initializer=_ignore_sigint)
            self._pool.__enter__()  # workers are kept for every generation of the run
        else:
            self.problem_bytes = _array_bytes(problem)
            try:
                self._future = self._client.scatter(problem, broadcast=True, hash=False)
            except Exception as e:
                raise EvomixError(f"dask scheduler at {self.scheduler}: could not send the session analysis "
                                  f"to the workers ({_one_line(e)})") from None
        return self

    def workers(self) -> int:
        """How many pieces a population is split into: local jobs, or the cluster's worker threads."""
        if self.backend == "dask":
            return max(1, sum(self._client.nthreads().values()))
        return self.n_jobs

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        """F (n, n_obj) of ``genomes`` (n, genes), as ``problem.evaluate_population`` gives it."""
        if self.problem is None:
            raise EvomixError("ParallelEvaluator: no Problem; call ship(problem) first")
        genomes = np.atleast_2d(np.asarray(genomes, dtype=float))
        if not self.spawns:
            return score(self.problem, genomes, self.threads)
        state = random.getstate()  # dask samples payloads with the global ``random`` (to decide on
        try:  # compression): leave the caller's sequence as it was, whatever the backend
            return self._distribute(genomes)
        finally:
            random.setstate(state)

    def _distribute(self, genomes: np.ndarray) -> np.ndarray:
        pieces = split(genomes, self.workers(), _block_of(self.problem))
        if self.backend == "local":
            from joblib import delayed  # loaded by ship() above
            from joblib.externals.loky.process_executor import TerminatedWorkerError

            self.payload_bytes = len(pickle.dumps([(self._path, p) for p in pieces]))
            try:
                out = self._pool(delayed(_evaluate_file)(self._path, p, self.threads) for p in pieces)
            except TerminatedWorkerError as e:
                raise EvomixError(f"--jobs: a worker process died ({_one_line(e)[:200]}); try fewer --jobs") from None
        else:
            self.payload_bytes = len(pickle.dumps([(self._future.key, p) for p in pieces]))
            futures = [self._client.submit(_evaluate_scattered, self._future, p, pure=False) for p in pieces]
            from distributed import KilledWorker  # optional dependency (evomix[dask])

            try:
                out = self._client.gather(futures)
            except (OSError, TimeoutError, KilledWorker) as e:  # connection lost, workers dying
                raise EvomixError(f"dask cluster at {self.scheduler} failed during the search "
                                  f"({_one_line(e)[:300]})") from None
        for _, (worker, loaded) in out:
            self.loads[worker] = self.loads.get(worker, 0) + loaded
        return np.concatenate([F for F, _ in out], axis=0)

    def close(self) -> None:
        """Release the pool, the temporary file and the scheduler connection (idempotent)."""
        if self._pool is not None:
            self._pool.__exit__(None, None, None)
            self._pool = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = self._path = None
        if self._client is not None:
            self._future = None
            try:
                self._client.close()
            finally:
                self._client = None

    def __enter__(self) -> ParallelEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten close(): still remove the temporary file
        try:
            self.close()
        except Exception:
            pass
