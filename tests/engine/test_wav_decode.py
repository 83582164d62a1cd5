"""The compiled PCM WAV decoder of ``evomix.io.audio`` (issue 23): the samples libsndfile gives, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from evomix.io.audio import load_session, read_audio


def _write(path, subtype: str, channels: int, n: int = 3001, sr: int = 44100, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1.0, 1.0, (n, channels))
    y[0] = -1.0  # the most negative code
    y[1] = 1.0 - 2.0**-23  # near the most positive one
    sf.write(str(path), y, sr, subtype=subtype)
    return path


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pcm_wav_decodes_to_libsndfiles_samples(tmp_path, subtype, channels, dtype):
    p = _write(tmp_path / "a.wav", subtype, channels)
    x, sr = read_audio(p, dtype=dtype)
    ref = sf.read(str(p), dtype=dtype, always_2d=True)[0].T
    assert sr == 44100 and x.dtype == np.dtype(dtype) and x.shape == ref.shape
    np.testing.assert_array_equal(x, ref)
    assert x.min() == -1.0  # the sign of the most negative code


@pytest.mark.parametrize("channels", [1, 2])
def test_decoding_into_a_buffer_fills_its_frames_and_leaves_the_rest(tmp_path, channels):
    p = _write(tmp_path / "a.wav", "PCM_24", channels, n=500)
    ref = sf.read(str(p), dtype="float32", always_2d=True)[0].T
    short = np.full((2, 300), 7.0, np.float32)  # fewer frames than the file: the first 300
    x, _ = read_audio(p, dtype="float32", into=short)
    assert x is short
    np.testing.assert_array_equal(short, np.broadcast_to(ref[:, :300], (2, 300)))
    long = np.full((2, 800), 7.0, np.float32)  # more: the tail is left alone
    read_audio(p, dtype="float32", into=long)
    np.testing.assert_array_equal(long[:, :500], np.broadcast_to(ref, (2, 500)))
    assert np.all(long[:, 500:] == 7.0)


def test_other_formats_are_read_by_libsndfile_and_into_is_left_alone(tmp_path):
    p = tmp_path / "f.wav"
    sf.write(str(p), np.random.default_rng(1).uniform(-0.5, 0.5, (400, 2)), 22050, subtype="FLOAT")
    buf = np.zeros((2, 400), np.float32)
    x, _ = read_audio(p, dtype="float32", into=buf)
    assert x is not buf and np.all(buf == 0.0)
    np.testing.assert_array_equal(x, sf.read(str(p), dtype="float32", always_2d=True)[0].T)


def test_extensible_and_extra_chunks(tmp_path):
    # WAVE_FORMAT_EXTENSIBLE (libsndfile's WAVEX) and a chunk before the data: still decoded, same samples
    p = tmp_path / "x.wav"
    y = np.random.default_rng(2).uniform(-1, 1, (777, 2))
    sf.write(str(p), y, 48000, subtype="PCM_24", format="WAVEX")
    raw = bytearray(p.read_bytes())
    fmt_end = raw.index(b"data")
    raw[fmt_end:fmt_end] = b"JUNK" + (6).to_bytes(4, "little") + b"abcdef"
    raw[4:8] = (len(raw) - 8).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    x, sr = read_audio(p, dtype="float32")
    np.testing.assert_array_equal(x, sf.read(str(p), dtype="float32", always_2d=True)[0].T)


def test_session_loaded_through_the_decoder_matches_libsndfile(tmp_path):
    _write(tmp_path / "kick.wav", "PCM_24", 1, n=2000, seed=3)
    _write(tmp_path / "bass.wav", "PCM_16", 2, n=1500, seed=4)
    s = load_session([tmp_path])
    for i, path in enumerate(s.paths):
        ref = sf.read(str(path), dtype="float32", always_2d=True)[0].T
        m = ref.shape[1]
        np.testing.assert_array_equal(s.audio[i, :, :m], np.broadcast_to(ref, (2, m)))
        assert np.all(s.audio[i, :, m:] == 0.0)
    assert list(s.is_mono[[s.names.index("kick"), s.names.index("bass")]]) == [True, False]
