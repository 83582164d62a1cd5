"""The tests' toolkit (after pedalboard's ``tests/utils.py``): synthetic signals, the small search
every end-to-end test runs, and one command-line runner.

Fixtures live in ``tests/conftest.py``; everything here is a plain function or constant, so a test
module imports what it uses (``from tests.support import SR, run_cli, small_search``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner, Result

from evomix.errors import cli_flag
from evomix.settings import Search
from evomix.testing.songs import mini_song

SR = 44100  # Hz, the tests' sample rate

# --- signals --------------------------------------------------------------------------------------


def sine(freq_hz, duration_s, sr=SR, amp=0.5, phase=0.0, fade_s=0.01):
    """A sine with short raised-cosine fades, shape (samples,), float64."""
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    x = amp * np.sin(2 * np.pi * freq_hz * t + phase)
    nf = int(fade_s * sr)
    if nf > 0 and 2 * nf < n:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(nf) / nf)
        x[:nf] *= ramp
        x[-nf:] *= ramp[::-1]
    return x


def song_stems(sr=SR, duration_s=4.0, seed=3, quiet_vocal_db=0.0):
    """A tiny synthetic multitrack, ``evomix.testing.songs.mini_song``: name -> (ch, samples) float32.

    kick-ish drums (stereo), a bass line (mono), keys chords (stereo) and a vocal-like harmonic
    tone (mono) that shares the keys' 300 Hz-2 kHz register; ``quiet_vocal_db`` lowers the vocal.
    """
    return mini_song(sr=sr, duration_s=duration_s, seed=seed, quiet_vocal_db=quiet_vocal_db)


def write_stems(folder, stems, sr=SR):
    """Write ``stems`` (name -> (ch, samples)) as 24-bit WAVs ``folder/NAME.wav``; returns the paths."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, x in stems.items():
        p = folder / f"{name}.wav"
        sf.write(p, x.T, sr, subtype="PCM_24")
        paths.append(p)
    return paths


# --- the small search -----------------------------------------------------------------------------

# A search that finishes in about a second on the tests' 4 s song: big enough for a front of a few
# members, small enough for every end-to-end test. A test overrides what it is about.
SMALL_SEARCH = dict(population=8, generations=2, seed=0, alternatives=1)


def small_search(**overrides) -> Search:
    """The tests' small :class:`evomix.settings.Search` (``SMALL_SEARCH``), with ``overrides``.

    >>> small_search(generations=3, alternatives=2)
    Search(algorithm='nsga2', population=8, generations=3, time_limit=30.0, seed=0, alternatives=2)
    """
    return Search(**{**SMALL_SEARCH, **overrides})


def search_flags(search: Search) -> list[str]:
    """The command-line flags giving ``search`` (``--population 8 --generations 2 ...``); the
    algorithm and time limit only where they differ from the defaults."""
    default = Search()
    flags = []
    for field in ("population", "generations", "seed", "alternatives", "algorithm", "time_limit"):
        value = getattr(search, field)
        if value is None or (field in ("algorithm", "time_limit") and value == getattr(default, field)):
            continue
        flags += [cli_flag(field), str(value)]
    return flags


# --- the command line -----------------------------------------------------------------------------

_RUNNER = CliRunner()


def run_cli(*args, **kw) -> Result:
    """``evomix ARGS`` in this process (typer's ``CliRunner.invoke``); paths and numbers may be
    given as such. ``kw`` goes to ``invoke`` (``input=``, ``env=``). The result has ``exit_code``,
    ``stdout``, ``stderr`` and ``output``."""
    from evomix.cli import app  # here, not at the top: conftest imports this module for every test

    return _RUNNER.invoke(app, [str(a) if isinstance(a, (Path, int, float)) else a for a in args], **kw)
