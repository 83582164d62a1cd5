"""`evomix analyze` measures a finished file with evomix's meter and with pyloudnorm beside it."""
import numpy as np
import pytest
import soundfile as sf

from evomix.tools.measure import independent_loudness, measure_file


@pytest.mark.parametrize("level", [0.05, 0.3])
def test_the_two_meters_agree_on_a_file(tmp_path, level):
    rng = np.random.default_rng(440)
    sr = 48000
    x = level * rng.standard_normal((2, 5 * sr))  # pink-ish enough: broadband noise, 5 s
    x[1] *= 0.5
    path = tmp_path / "noise.wav"
    sf.write(path, x.T, sr, subtype="FLOAT")
    d = measure_file(path)
    assert d["integrated_lufs_pyloudnorm"] == pytest.approx(d["integrated_lufs"], abs=0.1)  # BS.1770 conformance
    quieter = measure_file(_write(tmp_path / "q.wav", x * 0.5, sr))
    assert quieter["integrated_lufs_pyloudnorm"] == pytest.approx(d["integrated_lufs_pyloudnorm"] - 6.02, abs=0.05)


def _write(path, x, sr):
    sf.write(path, x.T, sr, subtype="FLOAT")
    return path


def test_silence_has_no_independent_loudness():
    assert independent_loudness(np.zeros((2, 48000)), 48000) is None
