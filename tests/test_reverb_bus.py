"""The reverb bus in the parameter space and the exact tier (issue 22, step 2).

Per stem a send (``reverb_send_db``, -40 dB = off), one stereo return (``engine.dsp.reverb``, Jot &
Chaigne 1991) added to the mix bus before the master chain; the genes are optional (a default table
leaves them out, so the search is the one before the bus existed); the processed-stem export writes
the return as its own file. Signals are made here: a short tone burst per stem, then silence.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import soundfile as sf

from evomix.engine.render import render_exact
from evomix.errors import ParameterError
from evomix.io.audio import load_session
from evomix.output.export.stems import REVERB_RETURN, render_for_stems, write_stems
from evomix.search.constraints import Constraints, constrain_table
from evomix.search.genome import (
    REVERB_MASTER_GENES,
    REVERB_SEND_OFF_DB,
    STEM_GENES,
    GeneTable,
    Params,
)
from tests.support import run_cli, search_flags, sine, small_search
from tests.support import write_stems as write_song

SR = 22050  # Hz: small and fast
NAMES = ["keys", "vocal"]
ROLES = ["keys", "vocal"]
DUR_S, BURST_S = 2.0, 0.5  # s: each stem sounds for its first BURST_S, then is silent


def _audio() -> np.ndarray:
    """(stems, 2, samples) float32: a 440 Hz tone (keys) and a 1 kHz tone (vocal) for ``BURST_S``."""
    n = int(DUR_S * SR)
    out = np.zeros((2, 2, n), np.float32)
    for s, f in enumerate((440.0, 1000.0)):
        out[s, :, : int(BURST_S * SR)] = sine(f, BURST_S, sr=SR, amp=0.3)
    return out


def _params(locks=(), ranges=()) -> Params:
    """Candidate 0: the neutral mix of a table with ``locks`` / ``ranges`` (command-line strings)."""
    table = constrain_table(GeneTable(2), NAMES, list(locks), list(ranges))
    return table.decode(table.neutral()[None], np.zeros(2))


def _render(params: Params, audio=None, **kw):
    audio = _audio() if audio is None else audio
    return render_exact(audio, np.zeros(2, bool), SR, params, target_lufs=-16.0, ceiling_dbtp=-1.0, **kw)


def test_reverb_genes_decode_and_encode():
    default = GeneTable(2)
    assert default.n_genes == 2 * len(STEM_GENES) + 4  # the genome of before the bus: the same search
    p = default.decode(np.random.default_rng(0).uniform(size=(3, default.n_genes)), np.zeros(2))
    assert np.all(p.reverb_send_db == REVERB_SEND_OFF_DB) and not p.has_reverb
    assert np.all(p.reverb_decay_s == 1.5) and np.all(p.reverb_highpass_hz == 150.0)
    table = constrain_table(default, NAMES, ["vocal.reverb_send_db=-12", "master.reverb.damping=0.3"],
                            ["*.reverb_send_db=-40:0", "master.reverb.decay_s=0.5:3"])
    assert table.n_genes == default.n_genes + 2 + 2  # a send per stem, decay and damping
    g = np.random.default_rng(1).uniform(size=(5, table.n_genes))
    p = table.decode(g, np.zeros(2))
    assert np.all(p.reverb_send_db[:, 1] == -12.0) and np.all((-40 <= p.reverb_send_db) & (p.reverb_send_db <= 0))
    assert np.all(p.reverb_damping == 0.3) and np.all((p.reverb_decay_s >= 0.5) & (p.reverb_decay_s <= 3.0))
    assert np.all(p.reverb_predelay_ms == 20.0)  # not named: neutral
    back = table.decode(table.encode(p), np.zeros(2))
    np.testing.assert_allclose(back.reverb_send_db, p.reverb_send_db, atol=1e-9)
    np.testing.assert_allclose(back.reverb_decay_s, p.reverb_decay_s, rtol=1e-9)
    d = p.to_dict(0, NAMES, ROLES)
    assert d["stems"]["vocal"]["reverb_send_db"] == -12.0
    assert set(d["master"]["reverb"]) == {"decay_s", "predelay_ms", "damping", "highpass_hz", "seed"}
    again = Params.from_dict(d, NAMES)
    for g_ in REVERB_MASTER_GENES:
        assert getattr(again, g_.name)[0] == getattr(p, g_.name)[0]
    assert np.array_equal(again.reverb_send_db[0], p.reverb_send_db[0])


def test_a_params_file_without_reverb_loads_as_dry():
    d = _params(["vocal.reverb_send_db=-6"]).to_dict(0, NAMES, ROLES)
    old = copy.deepcopy(d)
    del old["master"]["reverb"]
    for n in NAMES:
        del old["stems"][n]["reverb_send_db"]
    p = Params.from_dict(old, NAMES)
    assert np.all(p.reverb_send_db == REVERB_SEND_OFF_DB) and not p.has_reverb
    assert p.reverb_decay_s[0] == 1.5 and p.reverb_predelay_ms[0] == 20.0
    bad = copy.deepcopy(d)
    bad["stems"]["vocal"]["reverb_send_db"] = 3.0
    with pytest.raises(ParameterError, match=r"vocal\.reverb_send_db = 3 is outside its range -40\.\.0 dB"):
        Params.from_dict(bad, NAMES)


def test_send_off_renders_without_a_return_bit_identical():
    off = _params(["*.reverb_send_db=off"])
    assert np.all(off.reverb_send_db == -40.0)
    dry = _render(_params())  # the default table: no reverb genes at all
    r_off = _render(off, keep_stems=True)
    at_40 = _params(["*.reverb_send_db=-40"])
    assert np.array_equal(r_off.mix, dry.mix) and np.array_equal(_render(at_40).mix, dry.mix)
    assert r_off.reverb_return is None
    np.testing.assert_allclose(r_off.stems.sum(axis=0), r_off.mix, atol=1e-12)  # the stems alone sum to it


def test_a_send_adds_a_decaying_tail_not_a_gain():
    dry = _render(_params(), keep_stems=True)
    wet = _render(_params(["vocal.reverb_send_db=-6"]), keep_stems=True)
    assert not np.array_equal(wet.mix, dry.mix)
    ret = wet.reverb_return  # (2, samples), through the master gain
    assert ret is not None
    np.testing.assert_allclose(wet.stems.sum(axis=0) + ret, wet.mix, atol=1e-12)
    stop = int(BURST_S * SR)
    assert np.abs(dry.mix[:, stop + SR // 20 :]).max() < 1e-5  # the dry mix is (all but) silent after the bursts
    rms = [np.sqrt(np.mean(ret[:, a : a + SR // 10] ** 2)) for a in range(stop + SR // 20, stop + SR, SR // 10)]
    assert rms[0] > 1e-4  # a tail after the stems stop: a reverb, not a gain
    assert all(b < a for a, b in zip(rms, rms[1:]))  # decaying
    assert rms[-1] < 0.5 * rms[0]


def test_the_same_params_render_the_same_samples(tmp_path):
    params = _params(["vocal.reverb_send_db=-6", "keys.reverb_send_db=-20"])
    a, b = _render(params), _render(params)
    assert np.array_equal(a.mix, b.mix)
    paths = write_song(tmp_path / "stems", dict(zip(NAMES, _audio())), sr=SR)
    held = load_session(paths, keep_audio=True)
    streamed = load_session(paths, keep_audio=False)  # the per-stem mixer: the same samples
    p = _params(["vocal.reverb_send_db=-6", "keys.reverb_send_db=-20"])
    r_held, r_streamed = (_render(p, audio=s) for s in (held, streamed))
    assert np.array_equal(r_held.mix, r_streamed.mix)


def test_processed_stems_and_the_return_sum_to_the_master(tmp_path):
    paths = write_song(tmp_path / "stems", dict(zip(NAMES, _audio())), sr=SR)
    session = load_session(paths)
    params = Params.from_dict(_params(["vocal.reverb_send_db=-6", "keys.reverb_send_db=-15"]).to_dict(
        0, NAMES, ROLES), session.names)
    render = render_for_stems(session, params, target_lufs=-16.0, ceiling_dbtp=-1.0)
    files = write_stems(session, params, tmp_path / "out", render)
    assert REVERB_RETURN in files.files and files.files[REVERB_RETURN].exists()
    total = sum(sf.read(f, dtype="float64", always_2d=True)[0] for f in files.files.values()).T  # (2, samples)
    assert np.abs(total - render.mix).max() < 1e-5  # the stems export's tolerance
    dry = _params()
    files = write_stems(session, dry, tmp_path / "dry", render_for_stems(session, dry, target_lufs=-16.0,
                                                                         ceiling_dbtp=-1.0))
    assert REVERB_RETURN not in files.files and not (tmp_path / "dry" / f"{REVERB_RETURN}.wav").exists()


@pytest.mark.parametrize("entry, match", [
    ("vocal.reverb_sendd_db=-3", "unknown parameter 'reverb_sendd_db' (did you mean vocal.reverb_send_db?)"),
    ("vocal.reverb_send_db=3", "3 is outside the range of vocal.reverb_send_db, -40..0 dB"),
    ("vocal.reverb_send_db=-41", "-41 is outside the range of vocal.reverb_send_db, -40..0 dB"),
    ("master.reverb.seed=1", "master.reverb.seed is not searched (fixed at 0)"),
])
def test_bad_reverb_locks_are_one_clear_line(entry, match, tmp_path):
    with pytest.raises(ParameterError) as e:
        Constraints.parse([entry], lock_option="--lock")
    assert match in str(e.value) and "\n" not in str(e.value)
    res = run_cli("demo", "-o", tmp_path / "d", "--quiet", "--lock", entry)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and match in lines[0], res.output
    assert not (tmp_path / "d").exists()


def test_render_reproduces_an_exported_alternative_with_sends_sample_for_sample(tmp_path):
    """Issue 22: with the sends opened, `evomix mix` exports mixes with a return, and `evomix render`
    of an alternative's params file gives the same samples as its exported file."""
    folder = tmp_path / "stems"
    audio = _audio()
    write_song(folder, {n: audio[s] for s, n in enumerate(NAMES)}, sr=SR)
    out = tmp_path / "out"
    res = run_cli("mix", folder, "--out", out, *search_flags(small_search(population=8, generations=2, alternatives=2)),
                  "--range", "*.reverb_send_db=-20:-6", "--quiet")
    assert res.exit_code == 0, res.output
    params = json.loads((out / "alt-01.json").read_text())["params"]
    assert all(-20.0 <= st["reverb_send_db"] <= -6.0 for st in params["stems"].values())  # every send open
    again = tmp_path / "again.wav"
    res = run_cli("render", out / "alt-01.json", folder, "-o", again, "--quiet")
    assert res.exit_code == 0, res.output
    a, sr_a = sf.read(out / "alt-01.wav", dtype="int32")
    b, sr_b = sf.read(again, dtype="int32")
    assert sr_a == sr_b == SR and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
