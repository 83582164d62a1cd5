"""Parallel evaluation: --jobs (local processes) and --backend dask give the same front as one
process, the Problem travels to each worker once per run, and bad options fail with one line."""
import os
import random
import socket
import sys
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import evomix.search.parallel as par
from evomix import api
from evomix.engine.analysis import analyze_session
from evomix.errors import ParameterError
from evomix.io.audio import load_session
from evomix.search.genome import GeneTable
from evomix.search.parallel import ParallelEvaluator, score, split
from evomix.search.problem import BLOCK, Problem
from evomix.settings import Parallel
from objectives import OBJECTIVE_NAMES, Target, load_profile
from tests.support import run_cli, small_search

RUN = ["--population", "8", "--generations", "2", "--seed", "3", "--alternatives", "2", "--quiet"]


@pytest.fixture(scope="module")
def problem(stem_dir):
    session = load_session([stem_dir])
    table = GeneTable(session.n_stems)
    target = Target(profile=load_profile("pop"), target_lufs=-14.0, ceiling_dbtp=-1.0)
    return Problem(analyze_session(session), table, target, OBJECTIVE_NAMES, (1.0,) * len(OBJECTIVE_NAMES))


@pytest.fixture(scope="module")
def generations(problem):
    """Populations as the search sends them (and odd sizes an API caller might)."""
    rng = np.random.default_rng(7)
    return [rng.random((n, problem.table.n_genes)) for n in (1, 8, 8, 12, 5)]


class Recorded:
    """A Problem that leaves an empty file named after the process (``host:pid.<random>``) in
    ``folder`` each time it is unpickled, in whichever process: how these tests see where and how
    often the Problem travels, with nothing in the package counting. Worker processes import it
    from this module."""

    def __init__(self, problem, folder):
        self.problem, self.folder = problem, str(folder)

    def __setstate__(self, state):
        self.__dict__.update(state)
        Path(self.folder, f"{socket.gethostname()}:{os.getpid()}.{uuid.uuid4().hex}").touch()

    @property
    def block(self) -> int:
        return self.problem.block

    def weighted_scores(self, genomes):
        return self.problem.weighted_scores(genomes)


def unpickled(folder) -> Counter:
    """``{"host:pid": times that process unpickled a Recorded problem}`` of ``folder``."""
    return Counter(p.name.rsplit(".", 1)[0] for p in Path(folder).iterdir())


@pytest.fixture(scope="module")
def front_jobs1(stem_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("jobs1") / "out"
    res = run_cli(*["mix", str(stem_dir), "--out", str(out), *RUN])
    assert res.exit_code == 0, res.output
    return (out / "front.json").read_bytes()


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as c:
        yield c


@pytest.mark.slow
def test_jobs_2_writes_the_same_front_as_jobs_1(stem_dir, tmp_path, front_jobs1):
    out = tmp_path / "out"
    res = run_cli(*["mix", str(stem_dir), "--out", str(out), *RUN, "--jobs", "2"])
    assert res.exit_code == 0, res.output
    assert (out / "front.json").read_bytes() == front_jobs1


@pytest.mark.slow
def test_dask_cluster_gives_the_same_front_as_jobs_1(stem_dir, tmp_path, front_jobs1, cluster):
    result = api.mix([stem_dir], search=small_search(generations=2, seed=3, alternatives=2),
                     parallel=Parallel(backend="dask", scheduler=cluster.scheduler_address))
    result.write(tmp_path / "out")
    assert (tmp_path / "out" / "front.json").read_bytes() == front_jobs1


@pytest.fixture(scope="module")
def big_population(problem):
    """Three blocks: two full, one short (the shapes where BLAS may round a row differently)."""
    return np.random.default_rng(11).random((2 * BLOCK + 6, problem.table.n_genes))


def test_a_genome_is_scored_the_same_in_any_split_into_whole_blocks(problem, big_population):
    """What determinism across workers rests on: F depends only on the genome's block."""
    g = big_population
    whole = score(problem, g)
    assert np.array_equal(whole, problem.evaluate_population(g))
    for parts in (2, 3, 7):
        pieces = split(g, parts)
        assert np.array_equal(np.concatenate([score(problem, p) for p in pieces]), whole), parts
    assert np.array_equal(score(problem, g[BLOCK : 2 * BLOCK]), whole[BLOCK : 2 * BLOCK])  # a block alone
    assert np.array_equal(score(problem, g[2 * BLOCK :]), whole[2 * BLOCK :])
    # a block of one genome is rendered beside a copy of itself (never vectorized alone)
    assert np.array_equal(score(problem, g[:1]), score(problem, g[[0, 0]])[:1])
    assert len(np.unique(whole[:, 0])) > len(g) // 2  # guard: the genomes really score differently


def test_threads_give_the_same_scores_as_one(problem, generations, big_population):
    """Threads in this process split the population like workers do: bitwise the same F."""
    for g in [big_population, *generations]:
        one = score(problem, g)
        for threads in (2, 3):
            assert np.array_equal(score(problem, g, threads), one), (len(g), threads)


def test_threads_option_is_checked():
    from evomix.errors import ParameterError
    from evomix.search.parallel import check_options

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ParameterError, match="^threads must be a whole number >= 1"):
            check_options(1, "local", None, bad)
    check_options(1, "local", None, 3)


def test_split_gives_contiguous_pieces_of_whole_blocks():
    n = 3 * BLOCK + 5
    g = np.arange(n, dtype=float)[:, None]
    for parts in (1, 2, 3, 4, 40):
        pieces = split(g, parts)
        assert np.array_equal(np.concatenate(pieces), g)
        assert len(pieces) == min(parts, 4)
        starts = np.cumsum([0] + [len(p) for p in pieces])[:-1]
        assert all(s % BLOCK == 0 for s in starts)  # every piece begins on a block boundary
        assert all(len(p) % BLOCK == 0 for p in pieces[:-1])
    assert [len(p) for p in split(g, 2)] == [2 * BLOCK, BLOCK + 5]
    assert [len(p) for p in split(g[:1], 4)] == [1]


def test_one_local_job_is_a_plain_call(problem, generations):
    with ParallelEvaluator(problem) as ev:
        assert not ev.spawns
        for g in generations:
            assert np.array_equal(ev(g), score(problem, g))
        assert ev._pool is None and ev._path is None and ev._client is None and ev.loads == {}


def _check_shipped_once(ev, problem, generations, n_workers, folder, loads):
    for g in generations:
        state = random.getstate()
        assert np.array_equal(ev(g), score(problem, g))
        assert random.getstate() == state  # the caller's random sequence is left alone
        assert ev.payload_bytes < 64 * 1024  # per generation: genome pieces and a path / key
    assert ev.problem_bytes > 10 * ev.payload_bytes  # ... while the Problem is much larger
    # 9 tasks over 5 calls ran in worker processes (not this one), which unpickled the Problem once each
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert 1 <= len(ev.loads) <= n_workers and here not in ev.loads, ev.loads
    assert set(ev.loads.values()) == {loads}, ev.loads
    travels = unpickled(folder)
    assert set(ev.loads) <= set(travels) and here not in travels, travels
    assert set(travels.values()) == {1}, travels


@pytest.mark.slow
def test_local_pool_loads_the_problem_once_per_worker(problem, generations, tmp_path):
    with ParallelEvaluator(Recorded(problem, tmp_path), n_jobs=2) as ev:
        path = ev._path
        assert os.path.exists(path)
        _check_shipped_once(ev, problem, generations, 2, tmp_path, loads=1)
        assert set(unpickled(tmp_path)) == set(ev.loads)  # only a process that scored reads the file
    assert not os.path.exists(path), "the temporary Problem file outlived the run"


@pytest.mark.slow
def test_dask_workers_receive_the_problem_once(problem, generations, cluster, tmp_path):
    with ParallelEvaluator(Recorded(problem, tmp_path), backend="dask", scheduler=cluster.scheduler_address) as ev:
        _check_shipped_once(ev, problem, generations, 2, tmp_path, loads=0)  # no task loads it: ship() sent it
        # broadcast: every worker holds it, whether or not the scheduler gave it a task
        workers = {f"{socket.gethostname()}:{pid}" for pid in ev._client.run(os.getpid).values()}
        assert len(workers) == 2 and set(unpickled(tmp_path)) == workers


@pytest.mark.parametrize("args, needle", [
    (["--backend", "dask"], "--backend dask needs --scheduler ADDRESS"),
    (["--jobs", "0"], "--jobs must be a whole number >= 1"),
    (["--jobs", "-2"], "--jobs must be a whole number >= 1"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler is for --backend dask"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1", "--jobs", "2"], "--jobs is for --backend local"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"], "cannot reach the dask scheduler at tcp://127.0.0.1:1"),
    (["--backend", "dask", "--scheduler", "bogus://x"], "cannot reach the dask scheduler at bogus://x"),
])
def test_bad_parallel_options_fail_with_one_line(stem_dir, tmp_path, monkeypatch, args, needle):
    monkeypatch.setattr(par, "CONNECT_TIMEOUT_S", 0.5)
    out = tmp_path / "out"
    res = run_cli(*["mix", str(stem_dir), "--out", str(out), *RUN, *args])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evomix: error:") and needle in lines[0], res.stderr
    assert not out.exists() or not any(out.iterdir())


def test_an_unknown_backend_is_a_usage_error_of_one_line(stem_dir, tmp_path):
    """--backend is a choice: the command line refuses another value before anything runs (exit 2)."""
    import subprocess

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "evomix", "mix", str(stem_dir), "--out", str(out), "--backend", "spark"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("evomix: error: Invalid value for '--backend'") and "'local', 'dask'" in lines[0], lines
    assert not out.exists()


def test_demo_checks_parallel_options_before_writing(tmp_path):
    res = run_cli(*["demo", "--out", str(tmp_path / "d"), "--backend", "dask", "--quiet"])
    assert res.exit_code == 1 and "--scheduler" in res.stderr
    assert not (tmp_path / "d").exists()


def test_dask_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ParameterError, match=r'pip install "evomix\[dask\]"'):
        par.check_options(1, "dask", "tcp://127.0.0.1:8786")


@pytest.mark.slow
def test_scheduler_without_workers_is_reported():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as c:
        with pytest.raises(ParameterError, match="no dask worker is connected"):
            par.connect(c.scheduler_address, timeout=0.5)


@pytest.mark.slow
def test_workers_without_this_evomix_are_refused(cluster, monkeypatch):
    import evomix

    monkeypatch.setattr(evomix, "__version__", "9.9.9")  # the workers report the installed version
    with pytest.raises(ParameterError, match=r"have evomix .*; install evomix 9\.9\.9"):
        par.connect(cluster.scheduler_address, timeout=5)


def test_a_large_session_is_scored_in_small_blocks_and_a_population_of_32_splits_over_threads(problem, monkeypatch):
    """Above ``LARGE_BLOCK_STEM_FRAMES`` stems x frames the block is ``SMALL_BLOCK``: a population
    of 32 then goes to two threads, with the same F as on one thread."""
    from evomix.search import problem as evaluate

    a = problem.analysis
    assert problem.block == evaluate.BLOCK  # the test session is small
    monkeypatch.setattr(evaluate, "LARGE_BLOCK_STEM_FRAMES", a.n_stems * a.n_frames - 1)
    assert problem.block == evaluate.SMALL_BLOCK == 16
    g = np.random.default_rng(5).random((32, problem.table.n_genes))
    assert [len(p) for p in split(g, 2, problem.block)] == [16, 16]
    assert len(split(g, 2)) == 1  # one block of the default size: one piece
    one = score(problem, g)
    assert np.array_equal(score(problem, g, 2), one)
    assert np.array_equal(np.concatenate([score(problem, g[:16]), score(problem, g[16:])]), one)
