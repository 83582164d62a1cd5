"""Issue 13 items 2-3: processed stems that sum to the master, DAWproject and REAPER sessions.

One small mix (the tests' 4 s song, 2 alternatives) is written once with ``--export-stems``,
``--export-pre-stems`` and ``--daw dawproject,reaper``; the tests read the files back.
"""
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lxml import etree
from scipy.signal import sosfilt

from evomix.engine.eq import master_eq_sos
from evomix.errors import ParameterError
from evomix.output.export import parse_daw
from evomix.output.export.dawproject import percent_to_ratio
from evomix.output.export.stems import render_for_stems, write_stems
from evomix.search.genome import SHELF_Q, Params
from tests.support import run_cli, search_flags, small_search, song_stems
from tests.support import write_stems as write_song  # evomix's write_stems is the export under test

# the DAWproject 1.0 schemas (Bitwig, MIT): ../shared/specs/dawproject/ where present, else the copy
# in tests/data/dawproject/ (the same files) so the test runs from any checkout
SHARED = Path(__file__).resolve().parents[2] / "shared" / "specs" / "dawproject"
SPECS = SHARED if (SHARED / "Project.xsd").is_file() else Path(__file__).parent / "data" / "dawproject"


@pytest.fixture(scope="module")
def exported(stem_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    small = search_flags(small_search(generations=1, alternatives=2, seed=2))
    # a dry mix (every send off): the layout of issue 13; the reverb return's stem, send and track
    # are tested in test_export_sends.py and test_reverb_bus.py
    res = run_cli("mix", stem_dir, "--out", out, *small, "--quiet", "--export-pre-stems", "--daw", "dawproject,reaper",
                  "--lock", "*.reverb_send_db=off")
    assert res.exit_code == 0, res.output
    return out


def _params(out, alt="alt-01"):
    return json.loads((out / f"{alt}.json").read_text())


def _sum(folder):
    files = sorted(folder.glob("*.wav"))
    parts = [sf.read(f, dtype="float64", always_2d=True) for f in files]
    assert all(sr == 44100 and sf.info(f).subtype == "FLOAT" for f, (_, sr) in zip(files, parts))
    return files, sum(x for x, _ in parts), [x for x, _ in parts]


@pytest.mark.slow
@pytest.mark.parametrize("alt", ["alt-01", "alt-02"])
def test_processed_stems_sum_to_the_written_master(exported, stem_dir, alt):
    master, _ = sf.read(exported / f"{alt}.wav", dtype="float64", always_2d=True)  # 24-bit: step 2^-23
    files, total, parts = _sum(exported / f"{alt}-stems")
    assert [f.stem for f in files] == sorted(p.stem for p in stem_dir.glob("*.wav"))  # named by stem, one each
    assert total.shape == master.shape
    assert np.abs(total - master).max() < 1e-5  # float32 stems + 24-bit master rounding: ~1e-7 expected
    assert all(np.abs(x).max() > 1e-3 for x in parts)  # guard: every stem contributes
    assert not np.allclose(parts[0], parts[1], atol=1e-3)
    assert not list(exported.glob(".*"))  # atomic writes: no temporary file or folder left


@pytest.mark.slow
def test_pre_master_stems_are_the_bus_before_the_master_chain(exported, stem_dir):
    """Pre-master stems sum to the bus; the bus through the master EQ and gain is not the master
    (the compressor/normaliser/limiter gain G(t) is missing), but its master-EQ'd version is
    proportional to it sample by sample with one gain on both channels."""
    d = _params(exported)
    master, _ = sf.read(exported / "alt-01.wav", dtype="float64", always_2d=True)
    _, bus, _ = _sum(exported / "alt-01-stems-pre")
    p = Params.from_dict(d["params"], [f.stem for f in sorted(stem_dir.glob("*.wav"))])
    eq = sosfilt(master_eq_sos(p, 44100)[0], bus, axis=0)  # (samples, 2) master EQ of the bus
    assert not np.allclose(bus, master, atol=1e-3)  # guard: the master changes the level
    loud = np.abs(eq).min(axis=1) > 0.05  # both channels well above the 24-bit step
    gain = master[loud] / eq[loud]  # (n, 2): G(t), the same on both channels
    assert np.allclose(gain[:, 0], gain[:, 1], rtol=1e-3)


def test_stems_sum_to_the_master_through_hard_compression_and_limiting(tmp_path):
    """The claim where the master chain works hardest: a stereo-linked 4:1 compressor 20 dB over
    threshold, normalisation and > 3 dB of limiting are one per-sample gain."""
    from evomix.io.audio import load_session

    paths = write_song(tmp_path / "stems", song_stems(duration_s=3.0))
    session = load_session(paths)
    d = {"stems": {n: {"role": r, "trim_db": 0.0, "gain_db": 6.0, "pan": 0.3 * (k - 1.5),
                       "eq": {"highpass_hz": 40.0, "low_shelf_hz": 150.0, "low_shelf_db": 3.0, "peak_hz": 1000.0,
                              "peak_db": -4.0, "peak_q": 2.0, "high_shelf_hz": 6000.0, "high_shelf_db": 2.0},
                       "comp": {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0}}
                   for k, (n, r) in enumerate(zip(session.names, session.roles))},
         "master": {"eq": {"low_shelf_db": 2.0, "high_shelf_db": -2.0},
                    "comp": {"threshold_db": -20.0, "ratio": 4.0}}}
    params = Params.from_dict(d, session.names)
    render = render_for_stems(session, params, target_lufs=-7.0, ceiling_dbtp=-3.0)
    assert render.limiter_gr_db > 3.0  # guard: the limiter works hard
    assert render.master_gain.comp_ctrl.min() < 10 ** (-6 / 20)  # guard: so does the compressor (> 6 dB)
    files = write_stems(session, params, tmp_path / "stems-out", render)
    total = sum(sf.read(f, dtype="float64", always_2d=True)[0] for f in files.files.values()).T  # (2, samples)
    assert np.abs(total - render.mix).max() < 1e-5


_NORMALISE: dict = {}


def _normalise_db(out, alt):
    """The exact render's normalisation gain (dB) of ``alt``, rendered again from its params."""
    from evomix.io.audio import load_session

    d = json.loads((out / f"{alt}.json").read_text())
    if alt not in _NORMALISE:
        fr = json.loads((out / "front.json").read_text())
        session = load_session([Path(v["file"]) for v in fr["stems"].values()])
        r = render_for_stems(session, Params.from_dict(d["params"], session.names), target_lufs=d["target_lufs"],
                             ceiling_dbtp=d["ceiling_dbtp"])
        _NORMALISE[alt] = r.normalise_db
    return _NORMALISE[alt]


def _xml(z, name, xsd):
    schema = etree.XMLSchema(etree.parse(str(SPECS / xsd)))
    doc = etree.fromstring(z.read(name))
    assert schema.validate(doc), schema.error_log
    return doc


def _val(el, tag, unit=None):
    p = el.find(tag)
    if unit is not None:
        assert p.get("unit") == unit, (tag, p.get("unit"))
    return float(p.get("value"))


@pytest.mark.slow
@pytest.mark.parametrize("alt", ["alt-01", "alt-02"])
def test_dawproject_validates_against_the_xsd_and_round_trips(exported, alt):
    d = _params(exported, alt)
    path = exported / f"{alt}.dawproject"
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["metadata.xml", "project.xml"]
        project = _xml(z, "project.xml", "Project.xsd")
        meta = _xml(z, "metadata.xml", "MetaData.xsd")
    assert meta.findtext("Title") == alt and meta.findtext("Genre") == "pop"
    tracks = {t.get("id"): t for t in project.iter("Track")}
    channels = {c.get("id"): c for c in project.iter("Channel")}
    assert channels["master-channel"].get("role") == "master"
    for bus in ("edit-bus", "exact-bus"):
        assert channels[bus].get("destination") == "master-channel" and channels[bus].get("role") == "submix"
    assert channels["edit-bus"].find("Mute").get("value") == "true"
    assert channels["exact-bus"].find("Mute").get("value") == "false"
    clips = {lane.get("track"): lane.find("Clips/Clip") for lane in project.iter("Lanes") if lane.get("track")}
    stems = d["params"]["stems"]
    edit = [t for t in tracks["edit"].findall("Track")]
    assert [t.get("name") for t in edit] == list(stems)
    for t in edit:
        st = stems[t.get("name")]
        ch = t.find("Channel")
        assert ch.get("destination") == "edit-bus"
        assert math.isclose(_val(ch, "Volume", "linear"), 10 ** (st["gain_db"] / 20), rel_tol=1e-12)
        assert math.isclose(_val(ch, "Pan", "normalized"), (st["pan"] + 1) / 2, rel_tol=1e-12)
        eq = ch.find("Devices/Equalizer")
        assert math.isclose(_val(eq, "InputGain", "decibel"), st["trim_db"], rel_tol=1e-12)
        bands = {b.get("type"): b for b in eq.findall("Band")}
        assert list(bands) == ["highPass", "lowShelf", "bell", "highShelf"]
        assert bands["highPass"].get("order") == "2"
        assert _val(bands["highPass"], "Freq", "hertz") == st["eq"]["highpass_hz"]
        for kind, key in (("lowShelf", "low_shelf"), ("bell", "peak"), ("highShelf", "high_shelf")):
            assert _val(bands[kind], "Freq", "hertz") == st["eq"][f"{key}_hz"]
            assert _val(bands[kind], "Gain", "decibel") == st["eq"][f"{key}_db"]
        assert _val(bands["bell"], "Q", "linear") == st["eq"]["peak_q"]
        assert [_val(bands[k], "Q", "linear") for k in ("highPass", "lowShelf", "highShelf")] == [SHELF_Q] * 3
        assert all(b.find("Enabled").get("value") == "true" for b in bands.values())
        comp = ch.find("Devices/Compressor")
        assert _val(comp, "Threshold", "decibel") == st["comp"]["threshold_db"]
        assert math.isclose(percent_to_ratio(_val(comp, "Ratio", "percent")), st["comp"]["ratio"], rel_tol=1e-9)
        assert math.isclose(_val(comp, "Attack", "seconds"), st["comp"]["attack_ms"] / 1000, rel_tol=1e-12)
        assert math.isclose(_val(comp, "Release", "seconds"), st["comp"]["release_ms"] / 1000, rel_tol=1e-12)
        assert "knee 6 dB" in comp.get("comment")
        audio = clips[t.get("id")].find("Audio")
        f = audio.find("File")
        assert f.get("external") == "true"
        src = (path.parent / f.get("path")).resolve()  # relative to the .dawproject
        info = sf.info(str(src))
        assert src.name == f"{t.get('name')}.wav"
        assert int(audio.get("channels")) == info.channels and int(audio.get("sampleRate")) == info.samplerate
        assert math.isclose(float(audio.get("duration")), info.frames / info.samplerate, rel_tol=1e-12)
        assert float(clips[t.get("id")].get("time")) == 0.0
    master = d["params"]["master"]
    bus = channels["edit-bus"].find("Devices")
    mb = {b.get("type"): b for b in bus.find("Equalizer").findall("Band")}
    for kind, key in (("lowShelf", "low_shelf"), ("highShelf", "high_shelf")):
        assert _val(mb[kind], "Freq") == master["eq"][f"{key}_hz"]
        assert _val(mb[kind], "Gain") == master["eq"][f"{key}_db"]
    mc = bus.find("Compressor")
    assert _val(mc, "Threshold") == master["comp"]["threshold_db"]
    assert math.isclose(percent_to_ratio(_val(mc, "Ratio")), master["comp"]["ratio"], rel_tol=1e-9)
    assert math.isclose(_val(mc, "Attack") * 1000, master["comp"]["attack_ms"])
    assert math.isclose(_val(mc, "Release") * 1000, master["comp"]["release_ms"])
    assert _val(bus.find("Limiter"), "Threshold", "decibel") == -1.0
    assert _val(bus.find("Limiter"), "InputGain", "decibel") == _normalise_db(exported, alt)
    exact = tracks["exact"].findall("Track")
    assert len(exact) == len(stems)
    for t, name in zip(exact, stems):
        ch = t.find("Channel")
        assert ch.get("destination") == "exact-bus" and _val(ch, "Volume") == 1.0 and _val(ch, "Pan") == 0.5
        assert not ch.find("Devices").getchildren()
        f = clips[t.get("id")].find("Audio/File").get("path")
        assert f == f"{alt}-stems/{name}.wav" and (path.parent / f).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("alt", ["alt-01", "alt-02"])
def test_rpp_parses_back_with_every_value(exported, alt):
    rpp = pytest.importorskip("rpp")
    d = _params(exported, alt)
    path = exported / f"{alt}.RPP"
    proj = rpp.loads(path.read_text())
    assert proj.tag == "REAPER_PROJECT"
    assert proj.find("SAMPLERATE")[1] == "44100"
    assert proj.find("MASTER_VOLUME")[1] == "1"
    tracks = proj.findall("TRACK")
    stems = d["params"]["stems"]
    n = len(stems)
    assert len(tracks) == 2 * n + 2
    names = [t.find("NAME")[1] for t in tracks]
    assert names == [f"{alt} edit", *stems, f"{alt} exact", *[f"{s} (evomix)" for s in stems]]
    isbus = [tuple(t.find("ISBUS")[1:]) for t in tracks]
    folder = [("1", "1")] + [("0", "0")] * (n - 1) + [("2", "-1")]
    assert isbus == folder + folder
    assert [t.find("MUTESOLO")[1] for t in tracks] == ["1"] + ["0"] * (2 * n + 1)  # edit muted, exact plays
    norm = float(tracks[0].find("VOLPAN")[1])
    assert math.isclose(norm, 10 ** (_normalise_db(exported, alt) / 20), rel_tol=1e-12)
    notes = "\n".join(x[1:] if isinstance(x, str) else "" for x in proj.find("NOTES"))
    for k, (name, st) in enumerate(stems.items()):
        t = tracks[1 + k]
        vol, pan = (float(v) for v in t.find("VOLPAN")[1:3])
        assert math.isclose(vol, 10 ** (st["gain_db"] / 20), rel_tol=1e-12) and pan == st["pan"]
        item = t.find("ITEM")
        src = (path.parent / item.find("SOURCE").find("FILE")[1]).resolve()
        info = sf.info(str(src))
        assert src.name == f"{name}.wav"
        assert float(item.find("POSITION")[1]) == 0.0
        assert math.isclose(float(item.find("LENGTH")[1]), info.frames / info.samplerate, rel_tol=1e-12)
        assert f"ratio {st['comp']['ratio']:.3f}:1" in notes and f"bell {st['eq']['peak_hz']:.1f} Hz" in notes
        p = tracks[n + 2 + k]
        assert [float(v) for v in p.find("VOLPAN")[1:3]] == [1.0, 0.0]
        pf = p.find("ITEM").find("SOURCE").find("FILE")[1]
        assert pf == f"{alt}-stems/{name}.wav"
        length_s = float(p.find("ITEM").find("LENGTH")[1])
        assert math.isclose(length_s, sf.info(str(path.parent / pf)).duration, rel_tol=1e-12)
    track_notes = {x.attrib[0]: x for x in proj.findall("S&M_TRACKNOTES")}
    assert tracks[1].find("TRACKID")[1] in track_notes


def test_parse_daw_takes_comma_lists_and_repeats_and_names_the_valid_formats():
    assert parse_daw(["dawproject,reaper", "reaper"]) == ("dawproject", "reaper")
    assert parse_daw("Reaper") == ("reaper",)
    assert parse_daw(None) == ()
    with pytest.raises(ParameterError, match="^daw: unknown format 'ableton'; choose from dawproject, reaper"):
        parse_daw("dawproject,ableton")


def test_cli_rejects_an_unknown_daw_before_the_search(stem_dir, tmp_path):
    res = run_cli("mix", stem_dir, "--out", tmp_path / "o", "--daw", "protools", "--quiet")
    assert res.exit_code == 1
    assert "--daw: unknown format 'protools'" in res.output
    assert not (tmp_path / "o").exists()


def _session_and_params(out, alt="alt-01"):
    from evomix.io.audio import load_session

    fr = json.loads((out / "front.json").read_text())
    session = load_session([Path(v["file"]) for v in fr["stems"].values()])
    return session, _params(out, alt)


@pytest.mark.slow
def test_each_export_writes_only_what_was_asked(exported, tmp_path):
    from evomix.output.export import export_alternative

    session, d = _session_and_params(exported)
    kw = dict(target_lufs=d["target_lufs"], ceiling_dbtp=d["ceiling_dbtp"], genre="pop")
    assert export_alternative(session, d["params"], "alt-01", tmp_path, **kw) == []  # nothing asked, nothing rendered
    written = export_alternative(session, d["params"], "alt-01", tmp_path, stems=True, **kw)
    assert written == [tmp_path / "alt-01-stems"] and sorted(p.name for p in tmp_path.iterdir()) == ["alt-01-stems"]
    written = export_alternative(session, d["params"], "alt-01", tmp_path, daw=["reaper"], **kw)  # implies the stems
    assert [p.name for p in written] == ["alt-01-stems", "alt-01.RPP"]
    for f in (tmp_path / "alt-01-stems").iterdir():
        # the CLI reused the mix's render (its limiter gain kept as float32): equal to float32 rounding
        assert np.allclose(sf.read(f)[0], sf.read(exported / "alt-01-stems" / f.name)[0], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_failed_stem_export_leaves_no_folder_behind(exported, tmp_path, monkeypatch):
    import evomix.output.export.stems as stems_mod
    from evomix.errors import AudioFileError

    session, d = _session_and_params(exported)
    params = Params.from_dict(d["params"], session.names)
    render = render_for_stems(session, params, target_lufs=d["target_lufs"], ceiling_dbtp=d["ceiling_dbtp"])
    calls = []
    real = stems_mod.write_float_wav

    def failing(path, audio, sr):
        calls.append(path)
        if len(calls) == 2:
            raise AudioFileError(f"{path}: cannot write (disk full)")
        return real(path, audio, sr)

    monkeypatch.setattr(stems_mod, "write_float_wav", failing)
    (tmp_path / "alt-01-stems").mkdir()
    (tmp_path / "alt-01-stems" / "earlier.wav").write_bytes(b"x")  # an earlier export stays untouched
    with pytest.raises(AudioFileError, match="disk full"):
        write_stems(session, params, tmp_path / "alt-01-stems", render)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alt-01-stems"]  # no temporary folder left
    assert [p.name for p in (tmp_path / "alt-01-stems").iterdir()] == ["earlier.wav"]
