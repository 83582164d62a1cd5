"""DAWproject 1.0 session of one alternative: a ``.dawproject`` ZIP with project.xml and metadata.xml.

Source: DAWproject 1.0 (Bitwig, MIT licence), schemas ``Project.xsd`` / ``MetaData.xsd`` and the
element reference (``../shared/specs/dawproject/``); the file validates against both schemas
(``tests/test_export.py``, ``tests/test_export_sends.py``).

Layout (every time in seconds, ``timeUnit="seconds"``; no tempo mapping is needed):

* **Master** track, channel ``role="master"``: no devices, volume 1 (0 dB), pan centre.
* **"alt-NN edit"** group (``contentType="tracks"``), its channel a ``submix`` bus routed to the
  master and holding the master chain: built-in ``Equalizer`` (low shelf 100 Hz and high shelf
  8 kHz, the searched gains), built-in ``Compressor`` (threshold, ratio, 20 ms / 200 ms) and
  built-in ``Limiter`` (InputGain = the exact render's normalisation gain, Threshold = the ceiling).
  Its children: one audio track per stem, a clip of the **original stem file** at time 0, the
  channel's ``Equalizer`` (InputGain = trim, then high-pass, low shelf, bell, high shelf) and
  ``Compressor``, then Volume (fader, linear) and Pan, and a post-fader send per stem whose reverb
  send is on, to the group's last child, the "Reverb return" effect track (see the reverb bus
  below). Muted when the project opens.
* **"alt-NN exact"** group, a second ``submix`` bus routed to the master with no devices, holding
  one track per **processed stem** (``alt-NN-stems/<stem>.wav``, post-master, volume 1, pan
  centre), then the rendered reverb return when a send is on: playing it is the exact evomix master
  (the stems and the return sum to ``alt-NN.wav``). It plays when
  the project opens; un-mute "edit" and mute "exact" (two clicks) to continue from the settings.

The master chain sits on the "edit" bus, not on the DAW's master channel: the processed stems
already carry it, and on the master channel it would apply to them a second time.

Audio is referenced, not embedded: ``<File path=... external="true">`` relative to the
``.dawproject`` file (the output folder), so the folder stays portable together with the stems
folder at the same relative place (absolute only where no relative path exists).

Mappings and their limits (evomix -> DAWproject):

* fader ``gain_db`` -> Volume ``unit="linear"``, ``10^(gain_db/20)``.
* pan in [-1, 1] -> Pan ``unit="normalized"``, ``(pan + 1) / 2`` (0.5 centre). evomix pans mono
  stems with the constant-power law (-3 dB each side at the centre) and stereo stems as a balance;
  the DAW applies its own pan law, so off-centre levels can differ by up to 3 dB.
* trim -> the stem Equalizer's InputGain (dB), so the compressor sees the level evomix's did.
* high-pass -> band ``highPass`` ``order="2"`` (12 dB/oct), Freq, Q 0.707 (RBJ, Butterworth).
* shelves -> ``lowShelf`` / ``highShelf`` with Freq (the RBJ shelf midpoint), Gain (dB), Q 0.707
  (RBJ shelf Q; DAWs define shelf Q/slope differently, so the slope may differ slightly).
* peak -> ``bell`` with Freq, Gain, Q (RBJ peaking EQ, constant-Q definition of bandwidth).
* compressor ratio R -> Ratio ``unit="percent"``, ``100 (1 - 1/R)`` (0 % = 1:1, 100 % = inf:1;
  the reference says "percent (0-100)" without a formula: this is the slope reading).
  Threshold dB, Attack / Release in seconds. Not expressible: evomix's 6 dB soft knee, its
  RMS detector (50 ms window, 1 ms control step; DAW compressors often detect peaks) and its
  attack/release smoothing of the gain in dB: written into the device's ``comment``.
* limiter: evomix's is a 5 ms look-ahead true-peak limiter with an 80 ms release; the built-in
  ``Limiter`` gets Attack 5 ms, Release 80 ms, Threshold = ceiling; the DAW's detector may be
  sample-peak, so its reduction differs.
* reverb bus (only when a send is on; with every send off nothing of it is written and the file is
  byte for byte what it was before the bus existed):

  - send ``reverb_send_db`` -> a ``<Send type="post" destination="reverb-channel">`` on the stem's
    channel, Volume ``unit="linear"``, ``10^(send_db/20)`` (as the faders), Enable true, no Pan
    (no extra pan on the send). evomix's sends are post-fader *and post-pan*; the format's
    ``post`` does not say whether the channel's pan applies, so a DAW whose post-fader sends ignore
    the pan centres a panned stem's reverb. A send that is off (-40 dB, exactly no signal) is not
    written: an absent send is that, where a Volume of 0.01 would not be.
  - the return -> an **effect track** "Reverb return" (channel ``role="effect"``, id
    ``reverb-channel``), the last child of the "edit" group, routed to the edit bus, volume 1,
    pan centre. It sits in "edit", not beside it, because evomix adds the return to the mix bus
    *before* the master chain: on the edit bus the master EQ, compressor and limiter act on the dry
    stems and the reverb together, as in evomix. It holds no clip: the edit group makes the
    reverb from the sends, and the rendered return is post-master (a second pass through the master
    chain would be wrong).
  - the reverb's settings: DAWproject 1.0 has no built-in reverb device, and evomix's 16-line FDN is
    no plug-in a DAW has, so the effect channel holds a generic ``<Device deviceName="Reverb"
    deviceRole="audioFX" loaded="false">`` with named ``RealParameter`` s: "Decay time (RT60)"
    (seconds, the decay at low frequencies), "Pre-delay" (seconds), "HF damping (RT60 at 8 kHz /
    RT60)" (linear, in (0, 1]) and "Return high-pass" (hertz, 12 dB/oct), and a ``comment`` spelling
    them out with the seed. No DAW runs this device, so what is lost is the reverb itself (the
    DAW's reverb will differ in density, modulation and frequency-dependent decay) and the seed.
    Because an effect channel without a reverb would pass the sends dry (each stem added again at
    its send level), the effect channel is **muted** when the project opens: insert a reverb set
    from the device's values, then un-mute it.
  - the **rendered return** (``alt-NN-stems/reverb-return.wav``, post-master) -> one more track in
    the "exact" group, "Reverb return (evomix)" (a regular channel, volume 1, pan centre), so the
    exact group still sums to the master.
* dynamic unmasking (issue 22, item 2; only on a stem with a cut): DAWproject 1.0 has neither a
  dynamic EQ nor sidechain routing, so the stem's channel gets a generic, unloaded
  ``<Device deviceName="Dynamic EQ (keyed)">`` after its Equalizer and before its Compressor, with
  named parameters (Frequency Hz, full-cut Gain dB, Q, Key threshold dBFS, Attack and Release s) and
  a comment naming the key stem. Lost: the cut itself in the "edit" group (no DAW runs the device)
  and the key routing; the processed stems of the "exact" group carry the cut, so the exact
  master is unchanged.
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

from lxml import etree

from evomix import __version__
from evomix.engine.dsp.limiter import LIMITER_RELEASE_MS
from evomix.io.files import write_bytes_atomic
from evomix.output.export.model import MixSession, ReverbReturn
from evomix.search.genome import SHELF_Q

DAWPROJECT_VERSION = "1.0"
LIMITER_ATTACK_S = 0.005  # the exact tier's look-ahead (engine.render.LIMITER_LOOKAHEAD_MS)
COMP_COMMENT = ("evomix compressor: RMS detector (50 ms window, 1 ms steps), soft knee {knee:g} dB, "
                "ratio {ratio:.4g}:1 (Ratio percent = 100 (1 - 1/ratio)), gain smoothed in dB")


REVERB_TRACK_NAME = "Reverb return"
REVERB_TRACK, REVERB_CHANNEL, PROCESSED_RETURN = "reverb-return", "reverb-channel", "processed-return"
REVERB_COMMENT = ("evomix reverb: a 16-line feedback delay network (Jot & Chaigne 1991), 100 % wet, unity "
                  "energy gain; RT60 {decay:.3g} s at low frequencies, {hf:.3g} s at 8 kHz (damping {damping:.3g}), "
                  "pre-delay {predelay:.3g} ms, return high-pass {highpass:.4g} Hz (12 dB/oct), seed {seed}. "
                  "No DAW runs this device: replace it with a reverb set this way")
RETURN_COMMENT = ("reverb return: each stem sends post-fader to it and it joins the edit bus before the master "
                  "chain, as in evomix. Muted: without a reverb inserted it would pass the sends dry; insert a "
                  "reverb with the settings of its device, then un-mute")


def ratio_to_percent(ratio: float) -> float:
    """Compressor ratio R >= 1 -> DAWproject Ratio in percent: ``100 (1 - 1/R)``, in [0, 100)."""
    return 100.0 * (1.0 - 1.0 / float(ratio))


def percent_to_ratio(percent: float) -> float:
    """Inverse of :func:`ratio_to_percent` (percent in [0, 100))."""
    return 1.0 / (1.0 - float(percent) / 100.0)


def pan_to_normalized(pan: float) -> float:
    """Evomix pan in [-1, 1] -> DAWproject normalized pan in [0, 1] (0.5 centre)."""
    return (float(pan) + 1.0) / 2.0


def send_db_to_linear(level_db: float) -> float:
    """A send level in dB -> the Send's Volume ``unit="linear"``: ``10^(dB/20)`` (as the faders)."""
    return 10.0 ** (float(level_db) / 20.0)


def send_linear_to_db(volume: float) -> float:
    """Inverse of :func:`send_db_to_linear` (volume > 0)."""
    return 20.0 * math.log10(float(volume))


def _num(x: float) -> str:
    return repr(float(x))  # shortest round-trip text of a float64


class _Ids:
    def __init__(self):
        self.n = 0

    def __call__(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"


def _real(parent, tag: str, value: float, unit: str, ids=None, **attrs):
    el = etree.SubElement(parent, tag, unit=unit, value=_num(value), **attrs)
    if ids is not None:
        el.set("id", ids("p"))
    return el


def _bool(parent, tag: str, value: bool, ids=None):
    el = etree.SubElement(parent, tag, value="true" if value else "false")
    if ids is not None:
        el.set("id", ids("p"))
    return el


def _equalizer(parent, ids, name: str, bands: list, input_gain_db: float):
    """``bands``: (type, freq_hz, gain_db or None, q, order or None)."""
    eq = etree.SubElement(parent, "Equalizer", deviceRole="audioFX", deviceName="Equalizer", name=name,
                          id=ids("dev"))
    _bool(eq, "Enabled", True, ids)
    for kind, freq, gain, q, order in bands:
        b = etree.SubElement(eq, "Band", type=kind)
        if order is not None:
            b.set("order", str(order))
        _real(b, "Freq", freq, "hertz", ids)
        if gain is not None:
            _real(b, "Gain", gain, "decibel", ids)
        _real(b, "Q", q, "linear", ids)
        _bool(b, "Enabled", True, ids)
    _real(eq, "InputGain", input_gain_db, "decibel", ids)
    _real(eq, "OutputGain", 0.0, "decibel", ids)
    return eq


def _compressor(parent, ids, name: str, comp: dict):
    c = etree.SubElement(parent, "Compressor", deviceRole="audioFX", deviceName="Compressor", name=name,
                         id=ids("dev"), comment=COMP_COMMENT.format(knee=comp["knee_db"], ratio=comp["ratio"]))
    _bool(c, "Enabled", True, ids)  # Parameters?, Enabled?, State? come first (device), then compressor's own
    _real(c, "Attack", comp["attack_ms"] / 1000.0, "seconds", ids)
    _bool(c, "AutoMakeup", False, ids)
    _real(c, "InputGain", 0.0, "decibel", ids)
    _real(c, "OutputGain", 0.0, "decibel", ids)
    _real(c, "Ratio", ratio_to_percent(comp["ratio"]), "percent", ids, min="0", max="100")
    _real(c, "Release", comp["release_ms"] / 1000.0, "seconds", ids)
    _real(c, "Threshold", comp["threshold_db"], "decibel", ids)
    return c


def _limiter(parent, ids, mix: MixSession):
    lim = etree.SubElement(parent, "Limiter", deviceRole="audioFX", deviceName="Limiter", name="evomix limiter",
                           id=ids("dev"),
                           comment=(f"evomix: loudness normalisation {mix.normalise_db:+.2f} dB to "
                                    f"{mix.target_lufs:g} LUFS (InputGain), then a 5 ms look-ahead true-peak "
                                    f"limiter to {mix.ceiling_dbtp:g} dBTP "
                                    f"(peak reduction {mix.limiter_gr_db:.2f} dB in the exact render)"))
    _bool(lim, "Enabled", True, ids)
    _real(lim, "Attack", LIMITER_ATTACK_S, "seconds", ids)
    _real(lim, "InputGain", mix.normalise_db, "decibel", ids)
    _real(lim, "OutputGain", 0.0, "decibel", ids)
    _real(lim, "Release", LIMITER_RELEASE_MS / 1000.0, "seconds", ids)
    _real(lim, "Threshold", mix.ceiling_dbtp, "decibel", ids)
    return lim


def _reverb_device(parent, ids, rv: ReverbReturn):
    """The return's reverb as a generic, unloaded ``Device``: its settings as named parameters (the
    format has no built-in reverb, so no DAW runs it; the comment says what to set by hand)."""
    dev = etree.SubElement(parent, "Device", deviceRole="audioFX", deviceName="Reverb", deviceVendor="evomix",
                           loaded="false", name="evomix reverb (settings only)", id=ids("dev"),
                           comment=REVERB_COMMENT.format(decay=rv.decay_s, predelay=rv.predelay_ms,
                                                         damping=rv.damping, hf=rv.decay_s * rv.damping,
                                                         highpass=rv.highpass_hz, seed=rv.seed))
    params = etree.SubElement(dev, "Parameters")
    _real(params, "RealParameter", rv.decay_s, "seconds", ids, name="Decay time (RT60)")
    _real(params, "RealParameter", rv.predelay_ms / 1000.0, "seconds", ids, name="Pre-delay")
    _real(params, "RealParameter", rv.damping, "linear", ids, name="HF damping (RT60 at 8 kHz / RT60)",
          min="0", max="1")
    _real(params, "RealParameter", rv.highpass_hz, "hertz", ids, name="Return high-pass")
    _bool(dev, "Enabled", True, ids)
    return dev


UNMASK_COMMENT = ("evomix dynamic unmasking (not loaded: set a keyed dynamic EQ by hand): a peaking cut at "
                  "{freq:.1f} Hz, Q {q:.3f}, up to -{depth:.2f} dB while the sidechain key '{key}' (its trimmed "
                  "input, mono) is loud in that band; the cut starts at a band-passed key level of {threshold:.2f} "
                  "dBFS and is full 12 dB above it, attack {attack:.1f} ms, release {release:.1f} ms. In evomix it "
                  "sits after the trim, before this channel's EQ.")


def _unmask_device(parent, ids, p: dict):
    """The stem's dynamic cut (issue 22, item 2) as a generic, unloaded ``Device`` with its settings as named
    parameters, or nothing when the stem has no cut (depth 0 or no key). DAWproject 1.0 has no dynamic EQ
    device and no sidechain routing: what is lost is the cut itself (a DAW plays the stem uncut until a keyed
    dynamic EQ is set up from these values) and which signal keys it (named in the comment only)."""
    depth = float(p.get("unmask_depth_db") or 0.0)
    if depth <= 0.0 or not p.get("unmask_key"):
        return None
    dev = etree.SubElement(parent, "Device", deviceRole="audioFX", deviceName="Dynamic EQ (keyed)",
                           deviceVendor="evomix", loaded="false", name="evomix dynamic unmasking (settings only)",
                           id=ids("dev"), comment=UNMASK_COMMENT.format(
                               freq=p["unmask_hz"], q=p["unmask_q"], depth=depth, key=p["unmask_key"],
                               threshold=p["unmask_threshold_db"], attack=p["unmask_attack_ms"],
                               release=p["unmask_release_ms"]))
    params = etree.SubElement(dev, "Parameters")
    _real(params, "RealParameter", p["unmask_hz"], "hertz", ids, name="Frequency")
    _real(params, "RealParameter", -depth, "decibel", ids, name="Gain (full cut)")
    _real(params, "RealParameter", p["unmask_q"], "linear", ids, name="Q")
    _real(params, "RealParameter", p["unmask_threshold_db"], "decibel", ids, name="Key threshold")
    _real(params, "RealParameter", p["unmask_attack_ms"] / 1000.0, "seconds", ids, name="Attack")
    _real(params, "RealParameter", p["unmask_release_ms"] / 1000.0, "seconds", ids, name="Release")
    _bool(dev, "Enabled", True, ids)
    return dev


def _channel(track, ids, *, role: str, channels: int, destination: str | None, volume: float, pan: float,
             mute: bool = False, cid: str | None = None, sends: tuple = ()):
    """A mixer channel; ``sends``: (destination channel id, level dB) each, written as post-fader
    ``<Send>`` elements with a linear Volume (none written when empty, as before sends existed)."""
    ch = etree.SubElement(track, "Channel", role=role, audioChannels=str(channels), id=cid or ids("ch"))
    if destination is not None:
        ch.set("destination", destination)
    devices = etree.SubElement(ch, "Devices")
    _bool(ch, "Mute", mute, ids)
    _real(ch, "Pan", pan, "normalized", ids, min="0", max="1")
    if sends:  # the schema's order: Devices, Mute, Pan, Sends, Volume
        el = etree.SubElement(ch, "Sends")
        for dest, level_db in sends:
            send = etree.SubElement(el, "Send", destination=dest, type="post", name="Reverb", id=ids("send"))
            _bool(send, "Enable", True, ids)
            _real(send, "Volume", send_db_to_linear(level_db), "linear", ids, min="0")
    _real(ch, "Volume", volume, "linear", ids, min="0")
    return ch, devices


def _clip_lane(lanes, ids, track_id: str, name: str, file: str, channels: int, sr: int, duration_s: float):
    lane = etree.SubElement(lanes, "Lanes", track=track_id, id=ids("lane"))
    clips = etree.SubElement(lane, "Clips", id=ids("clips"))
    clip = etree.SubElement(clips, "Clip", time="0.0", duration=_num(duration_s), playStart="0.0", name=name)
    audio = etree.SubElement(clip, "Audio", channels=str(channels), sampleRate=str(sr), duration=_num(duration_s),
                             id=ids("audio"))
    etree.SubElement(audio, "File", path=file, external="true")


def project_xml(mix: MixSession) -> bytes:
    """The ``project.xml`` of ``mix`` (UTF-8 bytes)."""
    ids = _Ids()
    project = etree.Element("Project", version=DAWPROJECT_VERSION)
    etree.SubElement(project, "Application", name="evomix", version=__version__)
    transport = etree.SubElement(project, "Transport")
    _real(transport, "Tempo", 120.0, "bpm", ids, min="20", max="999")
    etree.SubElement(transport, "TimeSignature", numerator="4", denominator="4", id=ids("p"))
    structure = etree.SubElement(project, "Structure")
    arrangement = etree.SubElement(project, "Arrangement", id=ids("arr"))
    lanes = etree.SubElement(arrangement, "Lanes", timeUnit="seconds", id=ids("lanes"))

    master = etree.SubElement(structure, "Track", contentType="audio", loaded="true", name="Master", id="master")
    _channel(master, ids, role="master", channels=2, destination=None, volume=1.0, pan=0.5, cid="master-channel")

    m = mix.master
    edit = etree.SubElement(structure, "Track", contentType="tracks", loaded="true", name=f"{mix.name} edit",
                            id="edit", comment="original stems with evomix's settings; the bus holds the master chain")
    _, bus_devices = _channel(edit, ids, role="submix", channels=2, destination="master-channel", volume=1.0, pan=0.5,
                              mute=True, cid="edit-bus")
    _equalizer(bus_devices, ids, "evomix master EQ", [
        ("lowShelf", m["eq"]["low_shelf_hz"], m["eq"]["low_shelf_db"], SHELF_Q, None),
        ("highShelf", m["eq"]["high_shelf_hz"], m["eq"]["high_shelf_db"], SHELF_Q, None),
    ], 0.0)
    _compressor(bus_devices, ids, "evomix master compressor", m["comp"])
    _limiter(bus_devices, ids, mix)
    exact = etree.SubElement(structure, "Track", contentType="tracks", loaded="true", name=f"{mix.name} exact",
                             id="exact", comment="processed stems: together they are the exact evomix master")
    _channel(exact, ids, role="submix", channels=2, destination="master-channel", volume=1.0, pan=0.5,
             cid="exact-bus")

    for k, st in enumerate(mix.stems):
        p = st.settings
        eq = p["eq"]
        t = etree.SubElement(edit, "Track", contentType="audio", loaded="true", name=st.name, id=f"stem{k}",
                             comment=f"role {st.role}; original file {st.file}")
        sends = ((REVERB_CHANNEL, st.send_db),) if (mix.reverb is not None and st.send_db is not None) else ()
        _, devices = _channel(t, ids, role="regular", channels=st.channels, destination="edit-bus",
                              volume=10.0 ** (p["gain_db"] / 20.0), pan=pan_to_normalized(p["pan"]), sends=sends)
        _equalizer(devices, ids, f"{st.name} EQ", [
            ("highPass", eq["highpass_hz"], None, SHELF_Q, 2),
            ("lowShelf", eq["low_shelf_hz"], eq["low_shelf_db"], SHELF_Q, None),
            ("bell", eq["peak_hz"], eq["peak_db"], eq["peak_q"], None),
            ("highShelf", eq["high_shelf_hz"], eq["high_shelf_db"], SHELF_Q, None),
        ], p["trim_db"])
        _unmask_device(devices, ids, p)  # after the EQ here (evomix: before it; the two nearly commute)
        _compressor(devices, ids, f"{st.name} compressor", p["comp"])
        _clip_lane(lanes, ids, f"stem{k}", st.name, st.file, st.channels, st.file_sr, st.duration_s)
    if mix.reverb is not None:  # the return joins the edit bus (evomix's mix bus, before the master chain)
        t = etree.SubElement(edit, "Track", contentType="audio", loaded="true", name=REVERB_TRACK_NAME,
                             id=REVERB_TRACK, comment=RETURN_COMMENT)
        _, devices = _channel(t, ids, role="effect", channels=2, destination="edit-bus", volume=1.0, pan=0.5,
                              mute=True, cid=REVERB_CHANNEL)
        _reverb_device(devices, ids, mix.reverb)
    for k, st in enumerate(mix.stems):
        t = etree.SubElement(exact, "Track", contentType="audio", loaded="true", name=f"{st.name} (evomix)",
                             id=f"processed{k}", comment=f"processed stem {st.processed}")
        _channel(t, ids, role="regular", channels=2, destination="exact-bus", volume=1.0, pan=0.5)
        _clip_lane(lanes, ids, f"processed{k}", f"{st.name} (evomix)", st.processed, 2, mix.sr, mix.duration_s)
    if mix.reverb is not None:  # the rendered return: with the processed stems it sums to the master
        name = f"{REVERB_TRACK_NAME} (evomix)"
        t = etree.SubElement(exact, "Track", contentType="audio", loaded="true", name=name, id=PROCESSED_RETURN,
                             comment=f"rendered reverb return {mix.reverb.processed}")
        _channel(t, ids, role="regular", channels=2, destination="exact-bus", volume=1.0, pan=0.5)
        _clip_lane(lanes, ids, PROCESSED_RETURN, name, mix.reverb.processed, 2, mix.sr, mix.duration_s)
    return etree.tostring(project, xml_declaration=True, encoding="UTF-8", pretty_print=True, standalone=True)


def metadata_xml(mix: MixSession) -> bytes:
    """The ``metadata.xml`` of ``mix`` (UTF-8 bytes)."""
    meta = etree.Element("MetaData")
    etree.SubElement(meta, "Title").text = mix.name
    etree.SubElement(meta, "Genre").text = mix.genre
    etree.SubElement(meta, "Comment").text = (
        f"evomix {__version__}: {len(mix.stems)} stems, {mix.target_lufs:g} LUFS, ceiling {mix.ceiling_dbtp:g} dBTP")
    return etree.tostring(meta, xml_declaration=True, encoding="UTF-8", pretty_print=True, standalone=True)


def write_dawproject(mix: MixSession, path: Path | str) -> Path:
    """Write ``mix`` as a ``.dawproject`` container at ``path`` (atomically).

    The ZIP holds ``project.xml`` and ``metadata.xml``; audio stays outside, referenced by paths
    relative to ``path`` (``MixSession`` paths are relative to the output folder, which must be
    ``path``'s folder).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.xml", project_xml(mix))
        z.writestr("metadata.xml", metadata_xml(mix))
    return write_bytes_atomic(path, buf.getvalue())
