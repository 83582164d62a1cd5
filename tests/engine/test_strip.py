"""The streamed channel strip (engine.strip) is its whole-signal definition (sosfilt, the
compressor of engine.dsp, the gain stage, band_powers_chunked), for any chunk length."""
import numpy as np
import pytest
from scipy.signal import sosfilt

from evomix.engine.bands import band_grid, band_powers_chunked
from evomix.engine.dsp import compressor_gain, rbj_sos
from evomix.engine.render import _Grid
from evomix.engine.strip import CHUNK_HOPS, StripStream

SR = 44100
IDENTITY = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # a biquad that passes the signal unchanged


def _sos(sr):
    s = [rbj_sos("highpass", 60.0, 0.0, 0.707, sr), rbj_sos("lowshelf", 200.0, 3.0, 0.707, sr),
         rbj_sos("peak", 1800.0, -5.0, 1.2, sr), rbj_sos("highshelf", 7000.0, 2.0, 0.707, sr)]
    return np.ascontiguousarray(np.reshape(s, (4, 6)))


def _master(sr):
    return np.ascontiguousarray(np.reshape([rbj_sos("lowshelf", 100.0, 1.5, 0.707, sr),
                                            rbj_sos("highshelf", 8000.0, -1.0, 0.707, sr)], (2, 6)))


def _definition(x, sr, sos, msos, trim, fader, pans, thr, ratio, att, rel):
    """The strip from the definitions: RBJ biquads (sosfilt), the stereo-linked RMS compressor
    (engine.dsp.compressor_gain), fader and pan, the master shelves (sosfilt)."""
    y = sosfilt(sos, x.astype(np.float64) * trim, axis=-1)
    g = compressor_gain(y, sr, threshold_db=thr, ratio=ratio, attack_ms=att, release_ms=rel)  # (samples,)
    rows = [y[0] if x.shape[0] == 1 else y[c] for c in range(2)]
    return np.stack([sosfilt(msos, ((rows[c] * g) * fader) * pans[c]) for c in range(2)])


def _run(st, n):
    out = np.empty((2, n))
    while st.advance(out[:, st.done:]):
        pass
    assert st.done == n
    return out


@pytest.mark.parametrize("sr,seconds,rows", [(44100, 3.7, 2), (44100, 1.6, 1), (96000, 0.3, 2), (48000, 3.2, 2)])
def test_stream_is_the_definition_for_any_chunk_length(sr, seconds, rows, rng):
    n = int(sr * seconds)
    x = (rng.standard_normal((rows, n)) * np.linspace(0.02, 0.8, n)).astype(np.float32)
    x[:, n // 3 : n // 2] = 0.0  # a digital silence inside: states decay to exactly 0, no subnormals
    g = _Grid(sr, n)
    grid = band_grid(sr)
    kw = dict(trim=1.3, fader=0.7, pans=np.array([0.8, 0.55]), threshold_db=-24.0, ratio=5.0,
              attack_ms=3.0, release_ms=90.0)
    ref = _definition(x, sr, _sos(sr), _master(sr), 1.3, 0.7, kw["pans"], -24.0, 5.0, 3.0, 90.0)
    outs = []
    for chunk in (CHUNK_HOPS * grid.hop, grid.hop):
        st = StripStream(x, g, _sos(sr), _master(sr), bands=grid, chunk=chunk, **kw)
        out = _run(st, n)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)  # measured: <= 1.3e-14 apart (log10/pow ulps)
        np.testing.assert_array_equal(st.power, band_powers_chunked(out, grid))  # measured in the same pass
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])  # bit for bit, whatever the chunk
    ungained = _definition(x, sr, _sos(sr), _master(sr), 1.3, 0.7, kw["pans"], 0.0, 1.0, 3.0, 90.0)
    assert np.abs(ungained).max() > 1.5 * np.abs(ref).max()  # the compressor did work


def test_the_eq_alone_is_sosfilt_bit_for_bit(rng):
    n = int(SR * 2.1)
    x = rng.standard_normal((2, n)).astype(np.float32)
    st = StripStream(x, _Grid(SR, n), _sos(SR), IDENTITY, trim=1.7, fader=1.0, pans=np.ones(2), threshold_db=0.0,
                     ratio=1.0, attack_ms=5.0, release_ms=50.0, bands=None, chunk=CHUNK_HOPS * 2205)
    np.testing.assert_array_equal(_run(st, n), sosfilt(_sos(SR), x.astype(np.float64) * 1.7, axis=-1))


def test_chunks_into_a_small_buffer_add_up_to_the_whole(rng):
    n = int(SR * 2.5)
    x = (rng.standard_normal((2, n)) * 0.3).astype(np.float32)
    g = _Grid(SR, n)
    kw = dict(trim=1.0, fader=1.0, pans=np.array([0.7, 0.7]), threshold_db=-30.0, ratio=8.0, attack_ms=1.0,
              release_ms=50.0, bands=None, chunk=CHUNK_HOPS * 2205)
    ref = _run(StripStream(x, g, _sos(SR), _master(SR), **kw), n)
    st = StripStream(x, g, _sos(SR), _master(SR), **kw)
    buf = np.empty((2, st.chunk))
    parts = []
    while (m := st.advance(buf)):
        parts.append(buf[:, :m].copy())
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), ref)
