"""Issue 22, the DAW sessions: reverb sends and the return in DAWproject and REAPER.

One small mix (the tests' synthetic song, 2 s at 22.05 kHz) with three sends on at levels that are
not whole dB and one send off, exported with ``daw=("dawproject", "reaper")``; the tests read the
files back: the DAWproject validates against the 1.0 schemas and every send reads back with its
level and destination, the RPP parses back with every receive; without a send on, both sessions
are byte for byte what a params file from before the reverb bus gives.
"""
from __future__ import annotations

import copy
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lxml import etree

from evomix.io.audio import load_session
from evomix.output.export import export_alternative
from evomix.output.export.dawproject import send_linear_to_db
from evomix.output.export.model import describe
from evomix.output.export.stems import REVERB_RETURN_FILE, render_for_stems
from evomix.search.constraints import constrain_table
from evomix.search.genome import GeneTable, Params
from tests.support import song_stems
from tests.support import write_stems as write_song

SHARED = Path(__file__).resolve().parents[2] / "shared" / "specs" / "dawproject"
SPECS = SHARED if (SHARED / "Project.xsd").is_file() else Path(__file__).parent / "data" / "dawproject"

SR = 22050
ALT = "alt-01"
SENDS = {"drums": -21.5, "keys": -13.37, "vocal": -6.25}  # dB; bass stays off (-40: no signal)
RETURN = {"decay_s": 2.2, "predelay_ms": 35.0, "damping": 0.35, "highpass_hz": 220.0}
KW = dict(target_lufs=-16.0, ceiling_dbtp=-1.0, genre="pop")
DB_TOL = 1e-6  # dB: a send level read back from the file


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    root = tmp_path_factory.mktemp("sends")
    session = load_session(write_song(root / "stems", song_stems(sr=SR, duration_s=2.0), sr=SR))
    return root, session


def _params_dict(session, sends=SENDS, ret=RETURN) -> dict:
    """The neutral mix with ``sends`` locked on (dB) and the return's settings locked; the vocal panned."""
    locks = [f"{n}.reverb_send_db={db!r}" for n, db in sends.items()]
    locks += [f"master.reverb.{k}={v!r}" for k, v in ret.items()]
    table = constrain_table(GeneTable(len(session.names)), session.names, locks, [])
    p = table.decode(table.neutral()[None], np.zeros(len(session.names)))
    d = p.to_dict(0, session.names, session.roles)
    d["stems"]["vocal"]["pan"] = -0.4
    d["stems"]["drums"]["gain_db"] = -2.0
    return d


@pytest.fixture(scope="module")
def wet(song):
    root, session = song
    d = _params_dict(session)
    assert {n: st["reverb_send_db"] for n, st in d["stems"].items()} == {"bass": -40.0, **SENDS}  # guard
    out = root / "wet"
    out.mkdir()
    export_alternative(session, d, ALT, out, daw=("dawproject", "reaper"), **KW)
    return out, d, session


def _project(path: Path):
    with zipfile.ZipFile(path) as z:
        docs = {}
        for name, xsd in (("project.xml", "Project.xsd"), ("metadata.xml", "MetaData.xsd")):
            schema = etree.XMLSchema(etree.parse(str(SPECS / xsd)))
            docs[name] = etree.fromstring(z.read(name))
            assert schema.validate(docs[name]), schema.error_log
    return docs["project.xml"]


def _val(el, tag, unit=None):
    p = el.find(tag)
    if unit is not None:
        assert p.get("unit") == unit, (tag, p.get("unit"))
    return float(p.get("value"))


def test_describe_carries_each_send_and_the_return(wet, song):
    out, d, session = wet
    mix = describe(session, d, ALT, out, processed_folder=f"{ALT}-stems", normalise_db=0.0, limiter_gr_db=0.0, **KW)
    assert {st.name: st.send_db for st in mix.stems} == {"bass": None, **SENDS}
    rv = mix.reverb
    assert (rv.decay_s, rv.predelay_ms, rv.damping, rv.highpass_hz, rv.seed) == (*RETURN.values(), 0)
    assert rv.processed == f"{ALT}-stems/{REVERB_RETURN_FILE}" and (out / rv.processed).is_file()
    dry = copy.deepcopy(d)
    for st in dry["stems"].values():
        st["reverb_send_db"] = -40.0
    mix = describe(session, dry, ALT, out, processed_folder=f"{ALT}-stems", normalise_db=0.0, limiter_gr_db=0.0,
                   **KW)
    assert mix.reverb is None and all(st.send_db is None for st in mix.stems)


def test_dawproject_validates_and_reads_back_every_send(wet):
    out, d, session = wet
    project = _project(out / f"{ALT}.dawproject")
    channels = {c.get("id"): c for c in project.iter("Channel")}
    tracks = {t.get("id"): t for t in project.iter("Track")}
    edit = tracks["edit"].findall("Track")
    stems = d["stems"]
    # the effect track: the edit group's last child, into the edit bus (before the master chain), muted
    ret = edit[-1]
    fx = ret.find("Channel")
    assert ret.get("name") == "Reverb return" and [t.get("name") for t in edit[:-1]] == list(stems)
    assert fx.get("role") == "effect" and fx.get("destination") == "edit-bus"
    assert fx.find("Mute").get("value") == "true" and _val(fx, "Volume", "linear") == 1.0
    device = fx.find("Devices/Device")
    assert device.get("deviceRole") == "audioFX" and device.get("loaded") == "false"
    got = {p.get("name"): (float(p.get("value")), p.get("unit")) for p in device.find("Parameters")}
    assert got == {"Decay time (RT60)": (RETURN["decay_s"], "seconds"),
                   "Pre-delay": (RETURN["predelay_ms"] / 1000, "seconds"),
                   "HF damping (RT60 at 8 kHz / RT60)": (RETURN["damping"], "linear"),
                   "Return high-pass": (RETURN["highpass_hz"], "hertz")}
    assert not [lane for lane in project.iter("Lanes") if lane.get("track") == ret.get("id")]  # no clip
    # every send, read back: destination, type, level (dB within DB_TOL); none for the send that is off
    read = {}
    for t in edit[:-1]:
        sends = t.findall("Channel/Sends/Send")
        for s in sends:
            assert channels[s.get("destination")] is fx and s.get("type") == "post"
            assert s.find("Enable").get("value") == "true"
            read[t.get("name")] = send_linear_to_db(_val(s, "Volume", "linear"))
        assert len(sends) <= 1
    assert set(read) == set(SENDS)
    for name, db in SENDS.items():
        assert abs(read[name] - stems[name]["reverb_send_db"]) < DB_TOL and abs(read[name] - db) < DB_TOL
    # the exact group: the processed stems, then the rendered return; together they are the master
    exact = tracks["exact"].findall("Track")
    assert [t.get("name") for t in exact] == [*(f"{n} (evomix)" for n in stems), "Reverb return (evomix)"]
    clips = {lane.get("track"): lane.find("Clips/Clip") for lane in project.iter("Lanes") if lane.get("track")}
    files = [clips[t.get("id")].find("Audio/File").get("path") for t in exact]
    assert files[-1] == f"{ALT}-stems/{REVERB_RETURN_FILE}"
    assert all(t.find("Channel").get("destination") == "exact-bus" for t in exact)
    total = sum(sf.read(out / f, dtype="float64", always_2d=True)[0] for f in files).T
    master = render_for_stems(session, Params.from_dict(d, session.names), target_lufs=KW["target_lufs"],
                              ceiling_dbtp=KW["ceiling_dbtp"]).mix
    assert np.abs(total - master).max() < 1e-5  # float32 files
    ret_audio = sf.read(out / files[-1], dtype="float64")[0]
    assert np.abs(ret_audio).max() > 1e-3  # guard: the return sounds


def test_rpp_parses_back_with_every_send(wet):
    rpp = pytest.importorskip("rpp")
    out, d, _ = wet
    stems = d["stems"]
    n = len(stems)
    proj = rpp.loads((out / f"{ALT}.RPP").read_text())
    tracks = proj.findall("TRACK")
    names = [t.find("NAME")[1] for t in tracks]
    assert names == [f"{ALT} edit", *stems, "Reverb return", f"{ALT} exact", *(f"{s} (evomix)" for s in stems),
                     "Reverb return (evomix)"]
    folder = [("1", "1")] + [("0", "0")] * n + [("2", "-1")]  # the returns close their folders
    assert [tuple(t.find("ISBUS")[1:]) for t in tracks] == folder + folder
    assert [t.find("MUTESOLO")[1] for t in tracks] == ["1", *["0"] * n, "1", *["0"] * (n + 2)]
    ret = tracks[n + 1]
    receives = [x for x in ret if isinstance(x, list) and x[0] == "AUXRECV"]
    assert not any(isinstance(x, list) and x[0] == "AUXRECV" for t in tracks if t is not ret for x in t)
    read = {}
    for r in receives:
        src = tracks[int(r[1])]  # 0-based index of the source track in the project
        assert r[2] == "0"  # post-fader (post-pan)
        assert float(r[4]) == 0.0 and r[5] == "0"  # pan centre, not muted
        read[src.find("NAME")[1]] = 20 * math.log10(float(r[3]))
    assert set(read) == set(SENDS)
    for name, db in SENDS.items():
        assert abs(read[name] - stems[name]["reverb_send_db"]) < DB_TOL and abs(read[name] - db) < DB_TOL
    assert ret.find("ITEM") is None  # the edit return makes its reverb from the receives
    f = tracks[-1].find("ITEM").find("SOURCE").find("FILE")[1]
    assert f == f"{ALT}-stems/{REVERB_RETURN_FILE}" and (out / f).is_file()
    notes = "\n".join(x[1:] if isinstance(x, str) else "" for x in proj.find("NOTES"))
    assert "decay (RT60) 2.200 s at low frequencies, 0.770 s at 8 kHz (damping 0.350)" in notes
    assert "pre-delay 35.0 ms; return high-pass 220.0 Hz" in notes and "keys -13.37 dB" in notes
    track_notes = {x.attrib[0]: x for x in proj.findall("S&M_TRACKNOTES")}
    assert ret.find("TRACKID")[1] in track_notes


def _dry_files(out: Path) -> dict:
    with zipfile.ZipFile(out / f"{ALT}.dawproject") as z:  # the ZIP itself carries its write time
        files = {name: z.read(name) for name in sorted(z.namelist())}
    files["RPP"] = (out / f"{ALT}.RPP").read_bytes()
    return files


def test_without_a_send_on_both_sessions_are_what_they_were_before_the_bus(song):
    """Every send off (with the return's settings far from neutral) writes the same bytes as the
    params of a file from before the reverb bus (no reverb fields at all): nothing of the bus."""
    root, session = song
    off = _params_dict(session, sends={n: -40.0 for n in session.names})
    old = copy.deepcopy(off)
    del old["master"]["reverb"]
    for st in old["stems"].values():
        del st["reverb_send_db"]
    written = {}
    for label, d in (("off", off), ("old", old)):
        out = root / label  # siblings: the same relative paths to the stems
        out.mkdir()
        export_alternative(session, d, ALT, out, daw=("dawproject", "reaper"), **KW)
        assert not (out / f"{ALT}-stems" / REVERB_RETURN_FILE).exists()
        written[label] = _dry_files(out)
    assert written["off"] == written["old"]
    project, rpp_text = written["off"]["project.xml"], written["off"]["RPP"].decode()
    assert b"Send" not in project and b'role="effect"' not in project and b"Reverb" not in project
    assert "AUXRECV" not in rpp_text and "Reverb" not in rpp_text and "reverb" not in rpp_text


# Two dynamic cuts (issue 22, item 2) at values that are not round: the keys keyed by the vocal (by role),
# the bass by the drums (as ``--key bass=drums`` gives); the vocal's trim is not 0 dB, so the threshold on
# the untrimmed key the receive carries differs from evomix's.
CUTS = {"keys": dict(unmask_depth_db=7.5, unmask_hz=1234.5, unmask_q=1.7, unmask_attack_ms=6.5,
                     unmask_release_ms=123.0, unmask_key="vocal", unmask_threshold_db=-31.25),
        "bass": dict(unmask_depth_db=4.25, unmask_hz=95.5, unmask_q=0.8, unmask_attack_ms=2.5,
                     unmask_release_ms=80.0, unmask_key="drums", unmask_threshold_db=-18.5)}
VOCAL_TRIM_DB = -3.5


@pytest.fixture(scope="module")
def cut(song):
    root, session = song
    d = _params_dict(session)
    d["stems"]["vocal"]["trim_db"] = VOCAL_TRIM_DB
    for name, c in CUTS.items():
        d["stems"][name].update(c)
    out = root / "cut"
    out.mkdir()
    export_alternative(session, d, ALT, out, daw=("reaper",), **KW)
    return out, d


def test_rpp_parses_back_with_every_cut_and_its_key_routing(cut):
    """Every cut's settings read back from the project notes and the stem's SWS track notes, and its key as a
    pre-FX receive from the key's track into the keyed track's channels 3/4 (reaper.py: the cut itself is lost)."""
    rpp = pytest.importorskip("rpp")
    out, d = cut
    stems = list(d["stems"])
    proj = rpp.loads((out / f"{ALT}.RPP").read_text())
    tracks = proj.findall("TRACK")
    by_name = {t.find("NAME")[1]: (i, t) for i, t in enumerate(tracks)}
    notes = "\n".join(x[1:] if isinstance(x, str) else "" for x in proj.find("NOTES"))
    track_notes = {x.attrib[0]: "\n".join(y[1:] for y in x if isinstance(y, str))
                   for x in proj.findall("S&M_TRACKNOTES")}
    for name in stems:
        _, t = by_name[name]
        receives = [x for x in t if isinstance(x, list) and x[0] == "AUXRECV"]
        sidechain = [r for r in receives if r[2] == "1"]  # pre-FX: the key
        if name not in CUTS:
            assert not sidechain and t.find("NCHAN")[1] == "2"
            continue
        c = CUTS[name]
        assert t.find("NCHAN")[1] == "4" and len(sidechain) == 1
        r = sidechain[0]
        assert tracks[int(r[1])].find("NAME")[1] == c["unmask_key"]  # from the key's edit track
        assert int(r[1]) == by_name[c["unmask_key"]][0]
        assert float(r[3]) == 1.0 and r[8] == "0" and r[9] == "2"  # 0 dB, channels 1/2 -> 3/4
        key_trim = d["stems"][c["unmask_key"]]["trim_db"]
        line = (f"peaking {-c['unmask_depth_db']:+.2f} dB at {c['unmask_hz']:.1f} Hz, Q {c['unmask_q']:.3f}, "
                f"keyed by '{c['unmask_key']}'")
        times = f"attack {c['unmask_attack_ms']:.1f} ms, release {c['unmask_release_ms']:.1f} ms"
        thresholds = (f"passes {c['unmask_threshold_db']:.2f} dBFS (the trimmed key, mono; "
                      f"{c['unmask_threshold_db'] - key_trim:.2f} dBFS on the untrimmed key")
        for text in (notes, track_notes[t.find("TRACKID")[1]]):
            assert line in text and times in text and thresholds in text, text
    assert "-27.75 dBFS on the untrimmed key" in notes  # the keys' threshold -31.25 dB under a -3.5 dB trim
    # the parsed values round-trip the settings (the notes hold two decimals: within 0.005)
    for c in CUTS.values():
        m = re.search(rf"peaking ([-+0-9.]+) dB at ([0-9.]+) Hz, Q ([0-9.]+), keyed by '{c['unmask_key']}'", notes)
        assert m and abs(float(m[1]) + c["unmask_depth_db"]) < 0.005 and abs(float(m[2]) - c["unmask_hz"]) < 0.05
        assert abs(float(m[3]) - c["unmask_q"]) < 0.0005
