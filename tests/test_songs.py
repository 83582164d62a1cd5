"""The song synthesizer (evomix.testing.songs): instruments, session files and their cache."""
import json

import numpy as np
import pytest
import soundfile as sf

from evomix.errors import ParameterError
from evomix.io.audio import guess_role
from evomix.testing.songs import (
    KINDS,
    MINI_SONG_STEMS,
    SECTION_LEVEL,
    cached_session,
    mini_song,
    session_files,
    stem_plan,
    synth_stem,
    write_session,
)

SR = 22050
DUR_S = 6.0  # past the 4 s intro, where kick, snare, bass, guitar and vocal are tacet

# Role each arrangement kind's file name gives (evomix.io.audio.guess_role).
EXPECTED_ROLE = {"arp": "synth"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_instrument_is_stereo_finite_audible_and_seeded(kind):
    n = int(DUR_S * SR)
    x = synth_stem(kind, n, np.random.default_rng(1), sr=SR)
    assert x.shape == (2, n) and x.dtype == np.float64
    assert np.isfinite(x).all()
    assert np.sqrt(np.mean(x[:, int(4.5 * SR):] ** 2)) > 1e-3, kind  # audible after the intro
    assert not x[:, [0, -1]].any()  # 10 ms linear fades from and to 0
    np.testing.assert_array_equal(x, synth_stem(kind, n, np.random.default_rng(1), sr=SR))
    assert not np.array_equal(x, synth_stem(kind, n, np.random.default_rng(2), sr=SR))
    assert not np.array_equal(x, synth_stem(kind, n, np.random.default_rng(1), 1, sr=SR))  # variant


def test_sections_set_the_levels():
    # the kick is tacet in the 2-bar intro (4 s at 120 BPM) and plays in the verse
    x = synth_stem("kick", int(DUR_S * SR), np.random.default_rng(0), sr=SR)
    assert SECTION_LEVEL["kick"]["intro"] == 0.0
    assert np.abs(x[:, int(0.1 * SR):int(3.0 * SR)]).max() < 1e-6
    assert np.abs(x[:, int(4.6 * SR):]).max() > 0.1


def test_unknown_kind_names_the_choices():
    with pytest.raises(ParameterError, match="unknown kind 'kik'; choose from kick, bass"):
        synth_stem("kik", 100, np.random.default_rng(0))


def test_stem_plan_names_reveal_the_roles():
    plan = stem_plan(2 * len(KINDS) + 1)
    assert [k for _, k, _ in plan[:len(KINDS)]] == list(KINDS)
    assert plan[len(KINDS)] == ("kick_2.wav", "kick", 1)
    assert plan[-1] == ("kick_3.wav", "kick", 2)
    for name, kind, _ in plan:
        assert guess_role(name[:-4]) == EXPECTED_ROLE.get(kind, kind), name


def test_write_session_files(tmp_path):
    paths = write_session(tmp_path / "s", 3, 5.0, sr=SR, seed=5, mono=["bass"])
    assert [p.name for p in paths] == ["kick.wav", "bass.wav", "vocal.wav"]
    for p in paths:
        info = sf.info(str(p))
        assert (info.samplerate, info.frames, info.subtype, info.format) == (SR, 5 * SR, "PCM_24", "WAV")
        assert info.channels == (1 if p.name == "bass.wav" else 2), p.name
    assert session_files(tmp_path / "s") == paths
    again = write_session(tmp_path / "t", 3, 5.0, sr=SR, seed=5, mono=["bass"])
    other = write_session(tmp_path / "u", 3, 5.0, sr=SR, seed=6, mono=["bass"])
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(paths, other))


def test_write_session_levels(tmp_path):
    # level-set to an RMS in [-28, -16] dBFS (so the trims differ), peak <= 0.98
    for p in write_session(tmp_path, 4, DUR_S, sr=SR, seed=0):
        x, _ = sf.read(str(p), dtype="float64")
        rms_db = 20 * np.log10(np.sqrt(np.mean(x ** 2)))
        assert -28.1 <= rms_db <= -16.0 or np.abs(x).max() == pytest.approx(0.98, abs=1e-4), p.name
        assert np.abs(x).max() <= 0.98 + 2 ** -23, p.name  # one 24-bit step


@pytest.mark.parametrize("kwargs, needle", [({"n_stems": 0}, "n_stems"), ({"duration_s": 0.0}, "duration_s"),
                                            ({"sr": 4000}, "sr"), ({"mono": ["tuba"]}, "unknown kind 'tuba'")])
def test_write_session_bad_arguments(tmp_path, kwargs, needle):
    args = {"n_stems": 2, "duration_s": 1.0, "sr": SR, **kwargs}
    with pytest.raises(ParameterError, match=needle):
        write_session(tmp_path, args.pop("n_stems"), args.pop("duration_s"), **args)


def test_cached_session_is_reused_and_keyed(tmp_path):
    folder, reused = cached_session(2, 1.0, sr=SR, seed=3, cache_dir=tmp_path)
    assert not reused
    assert sorted(p.name for p in folder.iterdir()) == ["bass.wav", "kick.wav", "manifest.json"]
    assert folder.stat().st_mode & 0o777 == 0o755  # readable by every user of the machine
    key = json.loads((folder / "manifest.json").read_text())["key"]
    assert (key["n_stems"], key["duration_s"], key["sr"], key["seed"]) == (2, 1.0, SR, 3)
    stamp = (folder / "kick.wav").stat().st_mtime_ns
    again, reused = cached_session(2, 1.0, sr=SR, seed=3, cache_dir=tmp_path)
    assert (again, reused) == (folder, True)
    assert (folder / "kick.wav").stat().st_mtime_ns == stamp  # not rewritten
    other, reused = cached_session(2, 1.0, sr=SR, seed=4, cache_dir=tmp_path)
    assert other != folder and not reused
    # a damaged entry (a file of the wrong size) is synthesised again
    with open(folder / "kick.wav", "ab") as f:
        f.write(b"\0")
    fixed, reused = cached_session(2, 1.0, sr=SR, seed=3, cache_dir=tmp_path)
    assert fixed == folder and not reused
    assert sf.info(str(folder / "kick.wav")).frames == SR
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_mini_song():
    st = mini_song(sr=SR, duration_s=2.0, seed=3)
    assert tuple(st) == MINI_SONG_STEMS
    assert {k: v.shape for k, v in st.items()} == {"drums": (2, 2 * SR), "bass": (1, 2 * SR),
                                                   "keys": (2, 2 * SR), "vocal": (1, 2 * SR)}
    quiet = mini_song(sr=SR, duration_s=2.0, seed=3, quiet_vocal_db=20.0)
    np.testing.assert_allclose(quiet["vocal"], st["vocal"] / 10.0, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(quiet["keys"], st["keys"])
