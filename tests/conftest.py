"""Shared fixtures: a seeded rng, the tiny synthetic song's stems on disk, and that song loaded and
analysed once per test run (never ../shared audio). Signals and helpers: ``tests/support.py``."""
import numpy as np
import pytest

from tests.support import song_stems, write_stems


@pytest.fixture
def rng():
    return np.random.default_rng(440)


@pytest.fixture(scope="session")
def stem_dir(tmp_path_factory):
    """A folder with the tiny synthetic song's stems (4 s, 44.1 kHz): bass, drums, keys, vocal."""
    folder = tmp_path_factory.mktemp("stems")
    write_stems(folder, song_stems())
    return folder


@pytest.fixture(scope="session")
def stem_session(stem_dir):
    """``stem_dir`` loaded (``evomix.io.audio.load_session``), once per test run; do not mutate."""
    from evomix.io.audio import load_session

    return load_session(sorted(stem_dir.glob("*.wav")))


@pytest.fixture(scope="session")
def stem_analysis(stem_session):
    """``stem_session`` analysed (``evomix.engine.analysis.analyze_session``), once per test run."""
    from evomix.engine.analysis import analyze_session

    return analyze_session(stem_session)
