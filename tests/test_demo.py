"""Tests for the synthesized demo song (evomix.demo)."""
import numpy as np
import pytest
import soundfile as sf

from evomix.demo import DEMO_STEMS, synthesize_demo, write_demo_stems
from evomix.errors import ParameterError

SR = 22050
DUR = 4.0
CHANNELS = {"drums": 2, "bass": 1, "chords": 2, "lead": 1, "vocal": 1}


@pytest.fixture(scope="module")
def stems():
    return synthesize_demo(sr=SR, duration_s=DUR, seed=7)


def _rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_stem_names_shapes_dtype_and_range(stems):
    assert DEMO_STEMS == ("drums", "bass", "chords", "lead", "vocal")
    assert tuple(stems) == DEMO_STEMS
    for name, x in stems.items():
        assert x.dtype == np.float32, name
        assert x.shape == (CHANNELS[name], int(round(SR * DUR))), name
        assert np.all(np.isfinite(x)), name
        assert np.max(np.abs(x)) <= 0.99, name
        assert np.max(np.abs(x)) > 0.01, name  # not silent


def test_fades_at_both_ends(stems):
    for name, x in stems.items():
        assert np.max(np.abs(x[:, :2])) < 1e-3, name
        assert np.max(np.abs(x[:, -2:])) < 1e-3, name


def test_same_seed_identical_different_seed_differs(stems):
    again = synthesize_demo(sr=SR, duration_s=DUR, seed=7)
    other = synthesize_demo(sr=SR, duration_s=DUR, seed=8)
    for name in DEMO_STEMS:
        np.testing.assert_array_equal(stems[name], again[name])
        assert not np.array_equal(stems[name], other[name]), name


def test_vocal_is_15_db_below_the_other_stems(stems):
    others = [_rms_db(stems[n]) for n in DEMO_STEMS if n != "vocal"]
    assert max(others) - min(others) <= 4.0  # the four sit within +-2 dB
    deficit = np.median(others) - _rms_db(stems["vocal"])
    assert deficit == pytest.approx(15.0, abs=1.5)


@pytest.mark.parametrize("name, band_hz", [
    ("chords", (200.0, 2500.0)),  # chords and lead fight in the mid band ...
    ("lead", (200.0, 2500.0)),
    ("bass", (0.0, 200.0)),  # ... the rhythm section lives lower
    ("drums", (0.0, 200.0)),
])
def test_most_of_each_stem_s_power_is_in_its_register(stems, name, band_hz):
    x = stems[name].astype(np.float64)
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / SR)
    band = (freqs >= band_hz[0]) & (freqs < band_hz[1])
    assert power[:, band].sum() / power.sum() > 0.5, name


def test_write_demo_stems(tmp_path, stems):
    folder = tmp_path / "new" / "stems"
    paths = write_demo_stems(folder, sr=SR, duration_s=DUR, seed=7)
    assert paths == [folder / f"{n}.wav" for n in DEMO_STEMS]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.wav" for n in DEMO_STEMS)
    for name, path in zip(DEMO_STEMS, paths):
        info = sf.info(str(path))
        assert info.samplerate == SR
        assert info.subtype == "PCM_24"
        assert info.format == "WAV"
        assert info.channels == CHANNELS[name]
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        assert sr == SR
        np.testing.assert_allclose(data.T, stems[name], atol=2.0 ** -22)


@pytest.mark.parametrize("kwargs", [{"sr": 1000}, {"duration_s": 0.1}, {"duration_s": float("nan")}])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ParameterError):
        synthesize_demo(**kwargs)
