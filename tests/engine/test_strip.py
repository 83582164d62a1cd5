"""The streamed channel strip (engine.strip) is the whole-signal strip, chunk by chunk, bit for bit."""
import numpy as np
import pytest

from evomix.engine import chain
from evomix.engine.bands import band_grid, band_powers_chunked
from evomix.engine.dsp import rbj_sos
from evomix.engine.render import _Grid
from evomix.engine.strip import CHUNK_HOPS, StripStream

SR = 44100


def _sos(sr):
    s = [rbj_sos("highpass", 60.0, 0.0, 0.707, sr), rbj_sos("lowshelf", 200.0, 3.0, 0.707, sr),
         rbj_sos("peak", 1800.0, -5.0, 1.2, sr), rbj_sos("highshelf", 7000.0, 2.0, 0.707, sr)]
    return np.ascontiguousarray(np.reshape(s, (4, 6)))


def _master(sr):
    return np.ascontiguousarray(np.reshape([rbj_sos("lowshelf", 100.0, 1.5, 0.707, sr),
                                            rbj_sos("highshelf", 8000.0, -1.0, 0.707, sr)], (2, 6)))


def _whole_strip(x, rows, g, sos, msos, trim, fader, pans, thr, ratio, att, rel):
    """The strip as the renderer ran it before streaming: whole-signal kernels, one after the other."""
    buf = np.empty((2, x.shape[1]))
    for c in range(rows):
        chain.biquad_cascade(x[c], trim, sos, buf[c])
    ctrl = g.control_gain(buf, rows, thr, ratio, att, rel)
    for c in (1, 0):
        src = buf[0] if rows == 1 else buf[c]
        chain.gain_fader_pan_eq(src, ctrl, g.step, fader, float(pans[c]), msos, buf[c])
    return buf


@pytest.mark.parametrize("sr,seconds,rows", [(44100, 3.7, 2), (44100, 1.6, 1), (96000, 0.3, 2), (48000, 3.2, 2)])
def test_stream_is_the_whole_signal_strip_and_its_band_powers(sr, seconds, rows, rng):
    n = int(sr * seconds)
    x = (rng.standard_normal((rows, n)) * np.linspace(0.02, 0.8, n)).astype(np.float32)
    x[:, n // 3 : n // 2] = 0.0  # a digital silence inside
    g = _Grid(sr, n)
    grid = band_grid(sr)
    args = dict(trim=1.3, fader=0.7, pans=np.array([0.8, 0.55]), threshold_db=-24.0, ratio=5.0,
                attack_ms=3.0, release_ms=90.0)
    ref = _whole_strip(x, rows, g, _sos(sr), _master(sr), 1.3, 0.7, args["pans"], -24.0, 5.0, 3.0, 90.0)
    for chunk in (CHUNK_HOPS * grid.hop, grid.hop):  # the result does not depend on the chunk length
        st = StripStream(x, g, _sos(sr), _master(sr), bands=grid, chunk=chunk, **args)
        out = np.empty((2, n))
        while st.advance(out[:, st.done:]):
            pass
        assert st.done == n
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(st.power, band_powers_chunked(ref, grid))
    assert np.abs(ref).max() > 0.01  # it made sound (and compressed: the gain varies)


def test_chunks_into_a_small_buffer_add_up_to_the_whole(rng):
    n = int(SR * 2.5)
    x = (rng.standard_normal((2, n)) * 0.3).astype(np.float32)
    g = _Grid(SR, n)
    grid = band_grid(SR)
    kw = dict(trim=1.0, fader=1.0, pans=np.array([0.7, 0.7]), threshold_db=-30.0, ratio=8.0, attack_ms=1.0,
              release_ms=50.0, bands=None, chunk=CHUNK_HOPS * grid.hop)
    whole = StripStream(x, g, _sos(SR), _master(SR), **kw)
    ref = np.empty((2, n))
    while whole.advance(ref[:, whole.done:]):
        pass
    st = StripStream(x, g, _sos(SR), _master(SR), **kw)
    buf = np.empty((2, st.chunk))
    parts = []
    while (m := st.advance(buf)):
        parts.append(buf[:, :m].copy())
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), ref)
