"""Dynamic unmasking wired into the search (issue 22, item 2): the optional ``unmask_*`` genes, the
keys (``evomix.search.keys``), both tiers, the params JSON, ``evomix render`` and the stems export.

The DSP block itself (``engine.dsp.unmask``) is tested in ``tests/test_unmask.py``; here the
tiny synthetic song (``tests.support.song_stems``: drums, bass, keys, vocal; the vocal keys the
keys by role) carries it through the engine.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from evomix.engine.batch import render_features
from evomix.engine.dsp import unmask as dsp_unmask
from evomix.engine.render import features_from_render, render_exact
from evomix.errors import ParameterError
from evomix.search.constraints import Constraints, constrain_table
from evomix.search.genome import UNMASK_FREQ_RANGE_HZ, UNMASK_MAX_DEPTH_DB, UNMASK_NO_KEY, GeneTable, Params
from evomix.search.keys import KEY_THRESHOLD_BELOW_DB, key_map, parse_keys, resolve_keys
from objectives.masking import masking_matrix
from tests.support import SR, run_cli, write_stems

TARGET = dict(target_lufs=-14.0, ceiling_dbtp=-1.0)
CUT = ["keys.unmask_depth_db=12", "keys.unmask_hz=1000", "keys.unmask_q=1", "keys.unmask_attack_ms=5",
       "keys.unmask_release_ms=100"]


def _table(session, analysis, locks=(), ranges=()):
    table = constrain_table(GeneTable(session.n_stems), session.names, list(locks), list(ranges))
    return table.with_keys(key_map(analysis, resolve_keys(session.names, session.roles)))


def _params(session, analysis, locks=()):
    table = _table(session, analysis, locks)
    return table.decode(table.neutral()[None], analysis.trim_db)


def test_the_genes_mirror_the_dsp_block():
    assert UNMASK_FREQ_RANGE_HZ == dsp_unmask.FREQ_RANGE_HZ and UNMASK_MAX_DEPTH_DB == dsp_unmask.MAX_DEPTH_DB


def test_locks_and_ranges_parse_and_decode(stem_session, stem_analysis, rng):
    s = stem_session
    table = _table(s, stem_analysis, ["*.unmask_depth_db=off"],
                   ["keys.unmask_depth_db=0:9", "keys.unmask_hz=1000:4000"])
    i = s.names.index("keys")
    assert table.gene("unmask_depth_db", i).high == 9.0
    assert table.gene("unmask_depth_db", s.names.index("bass")).high == 0.0  # off: 0 dB, exactly
    p = table.decode(rng.uniform(size=(16, table.n_genes)), stem_analysis.trim_db)
    assert np.all((p.unmask_hz[:, i] >= 1000.0) & (p.unmask_hz[:, i] <= 4000.0))
    assert np.all((p.unmask_depth_db[:, i] >= 0.0) & (p.unmask_depth_db[:, i] <= 9.0))
    assert np.ptp(p.unmask_depth_db[:, i]) > 1.0  # searched, not stuck
    assert np.all(p.unmask_depth_db[:, np.arange(s.n_stems) != i] == 0.0)
    assert np.all(p.unmask_key[:, i] == s.names.index("vocal"))
    # the threshold follows the cut's band: the key's loud level there minus KEY_THRESHOLD_BELOW_DB
    assert np.ptp(p.unmask_threshold_db[:, i]) > 0.5
    assert Constraints.parse(["guitar.unmask_depth_db=0"]).entries[0].gene.name == "unmask_depth_db"


def test_keys_by_role_and_overrides():
    names, roles = ["vox", "gtr", "kick", "bass", "pad"], ["vocal", "guitar", "kick", "bass", "pad"]
    assert resolve_keys(names, roles).tolist() == [UNMASK_NO_KEY, 0, UNMASK_NO_KEY, 2, 0]
    assert resolve_keys(names, roles, parse_keys(["pad=none", "bass=gtr"])).tolist() == [-1, 0, -1, 1, -1]
    with pytest.raises(ParameterError, match="a stem cannot key its own cut"):
        resolve_keys(names, roles, parse_keys(["bass=bass"]))
    with pytest.raises(ParameterError, match="no stem named 'kik'"):
        resolve_keys(names, roles, parse_keys(["bass=kik"]))
    with pytest.raises(ParameterError, match="expected STEM=KEY"):
        parse_keys(["bass"])


def test_depth_zero_is_the_render_without_the_genes(stem_session, stem_analysis):
    """A table with the cut's genes at depth 0 (and keys) renders bit for bit as a bare table, in both tiers."""
    s, a = stem_session, stem_analysis
    bare = GeneTable(s.n_stems).decode(GeneTable(s.n_stems).neutral()[None], a.trim_db)
    off = _params(s, a, ["*.unmask_depth_db=0", "keys.unmask_hz=1000"])
    assert off.unmask_key[0, s.names.index("keys")] >= 0 and not off.has_unmask
    f0, f1 = (render_features(a, p, **TARGET) for p in (bare, off))
    for name in ("stem_power", "mix_power", "mix_cross", "stem_block_k", "loudness_lufs", "true_peak_dbtp"):
        assert np.array_equal(getattr(f0, name), getattr(f1, name)), name
    r0, r1 = (render_exact(s.audio, s.is_mono, s.sr, p, **TARGET) for p in (bare, off))
    assert np.array_equal(r0.mix, r1.mix)


@pytest.fixture(scope="module")
def cut_and_dry(stem_session, stem_analysis):
    """(dry params, cut params, fast features of both, exact features of both): the keys cut 12 dB at 1 kHz."""
    s, a = stem_session, stem_analysis
    dry = _params(s, a, ["*.unmask_depth_db=0"])
    cut = _params(s, a, CUT)
    fast = [render_features(a, p, **TARGET) for p in (dry, cut)]
    exact = [features_from_render(render_exact(s.audio, s.is_mono, s.sr, p, grid=a.grid, **TARGET), a.grid, s.roles)
             for p in (dry, cut)]
    return dry, cut, fast, exact


@pytest.fixture(scope="module")
def duet(tmp_path_factory):
    """A vocal that sings every other half second (noise in 800 Hz-2.5 kHz, a stand-in for a voice's presence
    band) over a guitar of noise in 300 Hz-4 kHz that never stops: the vocal keys the guitar (roles from the
    names)."""
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session

    rng = np.random.default_rng(440)
    sr, n = SR, int(4.0 * SR)
    t = np.arange(n) / sr
    gate = (np.floor(t / 0.5) % 2 == 1).astype(float)
    gate = np.convolve(gate, np.hanning(441) / np.hanning(441).sum(), mode="same")  # 10 ms fades
    f = np.fft.rfftfreq(n, 1 / sr)

    def band_noise(rows, lo_hz, hi_hz, rms):  # (rows, n) noise in [lo_hz, hi_hz]
        spec = np.fft.rfft(rng.normal(size=(rows, n)))
        spec[:, (f < lo_hz) | (f > hi_hz)] = 0.0
        x = np.fft.irfft(spec, n)
        return x * (rms / x.std())

    vocal = gate * band_noise(1, 800.0, 2500.0, 0.2)[0]
    guitar = band_noise(2, 300.0, 4000.0, 0.2)
    folder = write_stems(tmp_path_factory.mktemp("duet"), {"vocal": vocal[None].astype(np.float32),
                                                           "guitar": guitar.astype(np.float32)})
    session = load_session(folder)
    return session, analyze_session(session)


def _duet_features(session, analysis, locks):
    p = _params(session, analysis, locks)
    fast = render_features(analysis, p, **TARGET)
    exact = features_from_render(render_exact(session.audio, session.is_mono, session.sr, p, grid=analysis.grid,
                                              **TARGET), analysis.grid, session.roles)
    return fast, exact


# the vocal 26 dB under the guitar: well masked (the masking model's threshold lies 10-25 dB under a masker)
DUET_BALANCE = ["vocal.gain_db=-20", "guitar.gain_db=6"]
DUET_CUT = ["guitar.unmask_depth_db=12", "guitar.unmask_hz=1500", "guitar.unmask_q=0.7",
            "guitar.unmask_attack_ms=5", "guitar.unmask_release_ms=80"]


@pytest.fixture(scope="module")
def duet_features(duet):
    session, analysis = duet
    return [_duet_features(session, analysis, locks + DUET_BALANCE) for locks in (["*.unmask_depth_db=0"], DUET_CUT)]


def test_fast_and_exact_cut_agree_on_the_keyed_stem(duet, duet_features):
    """The cut's effect on the guitar's power per band over the heavy frames (cut over dry), in the two tiers.

    Tolerance 1 dB per band where the exact tier's cut takes at least 1 dB, 0.5 dB over those bands together
    (the fast tier models the time-varying filter frame by frame from 100 ms Hann frames; tests/test_unmask.py
    bounds the DSP block's own error)."""
    session, analysis = duet
    (fast0, exact0), (fast1, exact1) = duet_features
    g = session.names.index("guitar")
    h = analysis.heavy_frames

    def change_db(f0, f1, frames):  # (B,) dB: the guitar's power per band, cut over dry, channels and frames summed
        p0 = f0.stem_power[0, g].sum(axis=0)[:, frames].sum(-1)
        p1 = f1.stem_power[0, g].sum(axis=0)[:, frames].sum(-1)
        return 10 * np.log10(p1 / p0), p0

    fast_db, _ = change_db(fast0, fast1, slice(None))  # the fast tier holds the heavy frames only
    exact_db, p0 = change_db(exact0, exact1, h)
    # each tier re-normalises the mix's loudness after the cut, moving every band alike: the bands of the
    # guitar far from the cut give that offset
    hz = analysis.grid.centres_hz
    far = (p0 > 1e-4 * p0.max()) & ((hz < 400.0) | (hz > 3800.0))
    assert far.sum() >= 2
    fast_db, exact_db = fast_db - np.median(fast_db[far]), exact_db - np.median(exact_db[far])
    cut_bands = (exact_db < -1.0) & (p0 > 1e-4 * p0.max())
    assert cut_bands.sum() >= 3  # the cut is at work (a guard against a trivial pass)
    assert np.max(np.abs(fast_db[cut_bands] - exact_db[cut_bands])) < 0.5, (fast_db, exact_db)
    # frame by frame in the cut's bands: within 0.5 dB on average, 3 dB where the vocal starts or stops
    # (a 50 ms frame cannot tell where in it the key started: engine.dsp.unmask.cut_band_gain)
    frame_fast = 10 * np.log10(fast1.stem_power[0, g].sum(0) / fast0.stem_power[0, g].sum(0))[cut_bands]
    frame_exact = 10 * np.log10(exact1.stem_power[0, g].sum(0) / exact0.stem_power[0, g].sum(0))[cut_bands][:, h]
    err = np.abs(frame_fast - frame_exact - np.median(frame_fast - frame_exact))  # the normalisations' difference
    assert err.mean() < 0.5 and err.max() < 3.0, (err.mean(), err.max())


def test_the_cut_lowers_the_masking_between_key_and_keyed_stem_in_both_tiers(duet, duet_features):
    """The guitar's cut while the vocal sings leaves the vocal less masked by the guitar (the point of
    unmasking), in the fast tier and in the exact one; the guitar's masking of the vocal is ``masking_matrix``'s
    [vocal, guitar] cell (dB)."""
    session, _ = duet
    v, g = session.names.index("vocal"), session.names.index("guitar")
    (fast0, exact0), (fast1, exact1) = duet_features
    for before, after in ((fast0, fast1), (exact0, exact1)):
        m0, m1 = masking_matrix(before)[0, v, g], masking_matrix(after)[0, v, g]
        assert m1 < 0.5 * m0, (m0, m1)  # measured: 6.7 -> 0.85 dB in both tiers


def test_a_threshold_from_the_keys_loud_level(stem_session, stem_analysis):
    """The threshold is the key's band-passed loud level minus KEY_THRESHOLD_BELOW_DB: at 1 kHz the
    vocal's loud level is within the range of its frames' band-passed levels."""
    s, a = stem_session, stem_analysis
    p = _params(s, a, CUT)
    k, v = s.names.index("keys"), s.names.index("vocal")
    trim = 10 ** (a.trim_db[v] / 10)
    level = dsp_unmask.key_band_level_db(a.key_power[v] * trim, freq_hz=1000.0, q=1.0, bands_hz=a.grid, sr=a.sr)
    loud = p.unmask_threshold_db[0, k] + KEY_THRESHOLD_BELOW_DB
    assert np.percentile(level, 50) < loud < level.max() + 3.0


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, stem_dir):
    """A small search with the keys' cut open, its stems exported (the CLI)."""
    out = tmp_path_factory.mktemp("unmask") / "out"
    res = run_cli("mix", stem_dir, "--out", out, "--population", 8, "--generations", 2, "--alternatives", 1,
                  "--seed", 1, "--lock", "keys.unmask_depth_db=9", "--range", "keys.unmask_hz=800:3000",
                  "--export-stems", "--daw", "dawproject", "--quiet")
    assert res.exit_code == 0, res.output
    return out


def test_exported_params_carry_the_cut(mixed, stem_dir):
    d = json.loads((mixed / "alt-01.json").read_text())
    keys = d["params"]["stems"]["keys"]
    assert keys["unmask_key"] == "vocal" and keys["unmask_depth_db"] == 9.0
    assert 800.0 <= keys["unmask_hz"] <= 3000.0
    p = Params.from_dict(d["params"], list(d["params"]["stems"]))
    assert p.has_unmask


def test_render_reproduces_an_unmasked_alternative_sample_for_sample(mixed, stem_dir, tmp_path):
    res = run_cli("render", mixed / "alt-01.json", stem_dir, "-o", tmp_path / "again.wav", "--quiet")
    assert res.exit_code == 0, res.output
    a, _ = sf.read(mixed / "alt-01.wav", dtype="float64")
    b, _ = sf.read(tmp_path / "again.wav", dtype="float64")
    assert np.array_equal(a, b)


def test_processed_stems_sum_to_the_master_with_the_cut(mixed):
    master, _ = sf.read(mixed / "alt-01.wav", dtype="float64")
    stems = sorted((mixed / "alt-01-stems").glob("*.wav"))
    total = sum(sf.read(p, dtype="float64")[0] for p in stems)
    assert np.max(np.abs(total - master)) < 1e-5  # float32 stems, 24-bit master: as tests/test_export_stems.py


def test_dawproject_validates_and_carries_the_cut_as_a_placeholder(mixed):
    """The .dawproject still validates against the format's schema; the keys' channel holds the cut's settings
    as an unloaded "Dynamic EQ (keyed)" device naming its key (the format has no keyed dynamic EQ)."""
    import zipfile

    from lxml import etree

    from tests.test_export import SPECS

    with zipfile.ZipFile(mixed / "alt-01.dawproject") as z:
        schema = etree.XMLSchema(etree.parse(str(SPECS / "Project.xsd")))
        doc = etree.fromstring(z.read("project.xml"))
    assert schema.validate(doc), schema.error_log
    devices = doc.findall(".//Device[@deviceName='Dynamic EQ (keyed)']")
    assert len(devices) == 1 and "'vocal'" in devices[0].get("comment")
    gain = devices[0].find("Parameters/RealParameter[@name='Gain (full cut)']")
    assert float(gain.get("value")) == -9.0
