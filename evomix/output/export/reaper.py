"""REAPER project (``.RPP``, text) of one alternative.

Source: the RPP chunk format as REAPER writes it (``<REAPER_PROJECT``, ``<TRACK``, ``<ITEM``,
``<SOURCE WAVE``, ``VOLPAN``, ``MUTESOLO``, ``ISBUS``; Cockos, REAPER user guide "project files"
and the ReaScript ``GetSetMediaTrackInfo`` fields D_VOL / D_PAN / I_FOLDERDEPTH it stores), read
back in the tests with the ``rpp`` package (PyPI).

Layout:

* ``SAMPLERATE`` = the session rate; master at 0 dB (``MASTER_VOLUME 1 0 ...``).
* Folder **"alt-NN edit"** (``ISBUS 1 1``; its last child ``ISBUS 2 -1``), muted when the project
  opens (``MUTESOLO 1 0 0``): one track per stem with the **original stem file** as an item at
  0 s (LENGTH = the file's duration), ``VOLPAN`` = fader as linear gain ``10^(gain_db/20)`` and
  pan in [-1, 1] (REAPER's D_PAN sign: -1 left); the folder's own volume is the exact render's
  loudness normalisation gain (linear).
* Folder **"alt-NN exact"**: one track per **processed stem** (``alt-NN-stems/<stem>.wav``, volume
  1, pan 0): together they are the exact evomix master; it plays when the project opens. Mute it
  and un-mute "edit" to continue from the settings.

Not carried as settings: ReaEQ and ReaComp store their parameters as binary plug-in state
(base64 of an undocumented struct); writing it would be guessing. Trim, EQ (high-pass, shelves,
bell with Freq/Gain/Q), compressor (threshold, ratio, knee, attack, release, RMS detector) and the
master chain (shelves, compressor, normalisation, limiter) are written as text in the project
notes (``<NOTES``, REAPER: View > Project notes) and as SWS track notes (``<S&M_TRACKNOTES``,
shown with the SWS extension; ignored by REAPER without it). The edit folder is therefore the
balance (fader, pan, normalisation gain) without EQ, compression or limiting.
File paths are relative to the .RPP file (REAPER resolves them against the project folder).

The reverb bus (when any send is on; without one nothing below is written and the file is what it
was before the bus existed):

* **"Reverb return"**, the edit folder's last child (so it joins the folder's bus before the
  normalisation gain, as evomix's return joins the mix bus before the master chain), volume 1,
  pan 0, with one receive per stem whose send is on. REAPER declares a send on the receiving
  track: ``AUXRECV <source track index, 0-based> <mode> <volume> <pan> <mute> <mono sum>
  <polarity> <source channels> <dest channels> <pan law> <MIDI flags> <automation mode>``; mode 0
  is post-fader (post-pan), 1 pre-FX, 3 pre-fader (post-FX) (ReaTeam/Doc "State Chunk
  Definitions", after the Cockos wiki page of that name; the ReaScript API's ``I_SENDMODE`` "0 =
  post-fader, 1 = pre-fx, 2 = post-fx (deprecated), 3 = post-fx" and ``D_VOL`` "1.0 = +0dB" say
  the same). evomix's sends are post-fader and post-pan, so mode 0, volume ``10^(send_db/20)``,
  pan 0. A send that is off (-40 dB: exactly no signal) gets no receive.
* The reverb itself is not carried as a plug-in: ReaVerbate/ReaVerb keep binary state, and no
  REAPER reverb is evomix's 16-line FDN (decay at low frequencies and at 8 kHz, pre-delay,
  return high-pass, seed). Its settings are text in the project notes and the return's SWS track
  notes, and the return track is **muted**: without a reverb FX it would pass the sends dry, adding
  each stem again at its send level. Insert a reverb set from the notes, then un-mute it.
* **"Reverb return (evomix)"**, the exact folder's last child: the rendered post-master return
  (``alt-NN-stems/reverb-return.wav``); with the processed stems it is the exact master.

A stem's dynamic cut (issue 22, item 2; only on a stem whose cut is on: depth > 0 and a key; without
one nothing below is written):

* **The key's routing, as a sidechain**: the keyed stem's edit track gets 4 channels (``NCHAN 4``)
  and a receive from its key's edit track into channels 3/4, pre-FX (``AUXRECV`` mode 1: before the
  key's fader and pan, as evomix's key is the key stem before its own processing), at 0 dB, source
  channels 1/2 -> destination 3/4 (``AUXRECV`` fields 8 and 9: the ReaScript API's ``I_SRCCHAN`` /
  ``I_DSTCHAN`` "index, &1024 = mono, otherwise stereo pair", 0 = 1/2, 2 = 3/4; the field order as
  SWS writes it, ``SNM_SendPatcher`` in sws/SnM/SnM_Chunk.cpp). That is REAPER's sidechain layout: a
  plug-in on the track whose detector reads "auxiliary input" (channels 3/4) is keyed by it. The
  track's parent, the edit folder, has 2 channels; that it does not pass channels 3/4 on (so the key
  is not heard twice) is what REAPER's usual sidechain set-up relies on, not checked in REAPER itself
  (the tests parse the file back with the ``rpp`` package).
* **The cut itself is lost**: REAPER has no keyed dynamic EQ whose state is text (ReaEQ is static and
  cannot be keyed; ReaXcomp and third-party dynamic EQs keep binary state, and writing it would be
  guessing), so no plug-in is inserted and the edit track plays the stem uncut. Its settings (band,
  Q, depth, key, threshold both for evomix's trimmed key and for the untrimmed key that the receive
  carries, attack, release) are a line of the project notes and of the stem's SWS track notes:
  insert a dynamic EQ with a sidechain input, set it from them, and the routing is already there.
  The exact folder plays the processed stems, which carry the cut.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from evomix import __version__
from evomix.io.files import write_text_atomic
from evomix.output.export.model import MixSession, StemTrack

RETURN_NAME = "Reverb return"
AUXRECV_POST_FADER = 0  # AUXRECV mode: 0 post-fader (post-pan), 1 pre-FX, 3 pre-fader (post-FX)
AUXRECV_PRE_FX = 1
SIDECHAIN_DEST_CHANNELS = 2  # AUXRECV destination channel index: 0 = 1/2, 2 = 3/4 (a plug-in's auxiliary input)
GUID_NAMESPACE = uuid.UUID("6f1c2d0e-6b1a-4d59-9a51-8f5e7a0c3b21")  # evomix's: the same session gives the same GUIDs


def _quote(s: str) -> str:
    """REAPER's quoting: bare when no blank and no leading quote, else the first of ", ', ` absent."""
    s = str(s)
    if s and not any(c in s for c in " \t") and s[0] not in "\"'`":
        return s
    for q in ('"', "'", "`"):
        if q not in s:
            return f"{q}{s}{q}"
    return "`" + s.replace("`", "'") + "`"


def _num(x: float) -> str:
    return repr(float(x))


def _guid(*parts: str) -> str:
    return "{" + str(uuid.uuid5(GUID_NAMESPACE, "/".join(parts))).upper() + "}"


def stem_cut(st: StemTrack) -> dict | None:
    """The stem's dynamic cut (``unmask_*`` of its settings) when it is on (depth > 0 dB and a key), else None."""
    p = st.settings
    if float(p.get("unmask_depth_db") or 0.0) <= 0.0 or not p.get("unmask_key"):
        return None
    return p


def cut_notes(st: StemTrack, key_trim_db: float = 0.0) -> list[str]:
    """Readable lines with the stem's dynamic cut (for the notes); empty without one. ``key_trim_db``:
    the key stem's trim, dB (the receive carries the key untrimmed: its threshold is given for both)."""
    p = stem_cut(st)
    if p is None:
        return []
    thr = float(p["unmask_threshold_db"])
    return [
        f"  dynamic cut (not loaded: insert a dynamic EQ with a sidechain input): peaking {-p['unmask_depth_db']:+.2f} "
        f"dB at {p['unmask_hz']:.1f} Hz, Q {p['unmask_q']:.3f}, keyed by '{p['unmask_key']}' (its track's receive on "
        f"channels 3/4, pre-FX); the cut starts when the key's level through a band-pass at that frequency and Q "
        f"passes {thr:.2f} dBFS (the trimmed key, mono; {thr - key_trim_db:.2f} dBFS on the untrimmed key the "
        f"receive carries) and is full 12 dB above it; attack {p['unmask_attack_ms']:.1f} ms, release "
        f"{p['unmask_release_ms']:.1f} ms; in evomix after the trim, before the EQ",
    ]


def stem_notes(st: StemTrack, key_trim_db: float = 0.0) -> list[str]:
    """Readable lines with every setting of a stem (for the notes); ``key_trim_db`` as for :func:`cut_notes`."""
    p, eq, c = st.settings, st.settings["eq"], st.settings["comp"]
    return [
        f"{st.name} ({st.role}): file {st.file}",
        f"  trim {p['trim_db']:+.2f} dB, fader {p['gain_db']:+.2f} dB, pan {p['pan']:+.3f}",
        f"  EQ: high-pass {eq['highpass_hz']:.1f} Hz (12 dB/oct, Q 0.707); low shelf {eq['low_shelf_hz']:.1f} Hz "
        f"{eq['low_shelf_db']:+.2f} dB; bell {eq['peak_hz']:.1f} Hz {eq['peak_db']:+.2f} dB Q {eq['peak_q']:.3f}; "
        f"high shelf {eq['high_shelf_hz']:.1f} Hz {eq['high_shelf_db']:+.2f} dB (RBJ, shelf Q 0.707)",
        f"  compressor: threshold {c['threshold_db']:+.2f} dB, ratio {c['ratio']:.3f}:1, knee {c['knee_db']:g} dB, "
        f"attack {c['attack_ms']:.1f} ms, release {c['release_ms']:.1f} ms (RMS detector, 50 ms)",
        *([f"  reverb send {st.send_db:+.2f} dB (post-fader, post-pan)"] if st.send_db is not None else []),
        *cut_notes(st, key_trim_db),
    ]


def reverb_notes(mix: MixSession) -> list[str]:
    """Readable lines with the reverb bus (for the notes): the return's settings and every send on;
    empty when every send is off."""
    rv = mix.reverb
    if rv is None:
        return []
    sends = ", ".join(f"{st.name} {st.send_db:+.2f} dB" for st in mix.stems if st.send_db is not None)
    return [
        f"reverb return ('{RETURN_NAME}' track, muted: it has no reverb FX and would pass the sends dry; insert "
        "one set as below, then un-mute it):",
        f"  decay (RT60) {rv.decay_s:.3f} s at low frequencies, {rv.decay_s * rv.damping:.3f} s at 8 kHz "
        f"(damping {rv.damping:.3f}); pre-delay {rv.predelay_ms:.1f} ms; return high-pass {rv.highpass_hz:.1f} Hz "
        f"(12 dB/oct); 100 % wet, unity energy gain (evomix's 16-line FDN, Jot & Chaigne 1991, seed {rv.seed})",
        f"  sends (post-fader, post-pan; the track's receives): {sends}",
    ]


def master_notes(mix: MixSession) -> list[str]:
    """Readable lines with every setting of the master chain (for the notes)."""
    m = mix.master
    return [
        f"master: low shelf {m['eq']['low_shelf_hz']:g} Hz {m['eq']['low_shelf_db']:+.2f} dB; high shelf "
        f"{m['eq']['high_shelf_hz']:g} Hz {m['eq']['high_shelf_db']:+.2f} dB",
        f"  compressor (stereo-linked): threshold {m['comp']['threshold_db']:+.2f} dB, "
        f"ratio {m['comp']['ratio']:.3f}:1, knee {m['comp']['knee_db']:g} dB, attack {m['comp']['attack_ms']:g} ms, "
        f"release {m['comp']['release_ms']:g} ms",
        f"  normalisation {mix.normalise_db:+.2f} dB to {mix.target_lufs:g} LUFS (the edit folder's volume), "
        f"true-peak limiter to {mix.ceiling_dbtp:g} dBTP (5 ms look-ahead, 80 ms release; "
        f"peak reduction {mix.limiter_gr_db:.2f} dB)",
    ]


def _item(lines: list, ind: str, name: str, file: str, length_s: float) -> None:
    lines += [f"{ind}<ITEM", f"{ind}  POSITION 0", f"{ind}  LENGTH {_num(length_s)}", f"{ind}  NAME {_quote(name)}",
              f"{ind}  <SOURCE WAVE", f"{ind}    FILE {_quote(file)}", f"{ind}  >", f"{ind}>"]


def auxrecv(source_index: int, level_db: float) -> str:
    """One receive line of the receiving track: from track ``source_index`` (0-based, in project
    order), post-fader post-pan (mode 0), volume ``10^(dB/20)``, pan centre, not muted, no mono sum
    or polarity flip, channels 1+2 -> 1+2, the project's pan law (-1), MIDI flags 0 (all channels;
    the tracks hold audio only), the track's automation mode (-1)."""
    volume = 10.0 ** (float(level_db) / 20.0)
    return f"AUXRECV {int(source_index)} {AUXRECV_POST_FADER} {_num(volume)} 0 0 0 0 0 0 -1 0 -1"


def sidechain_recv(source_index: int) -> str:
    """The keyed track's receive of its key (module doc): from track ``source_index`` (0-based), pre-FX
    (mode 1), 0 dB, pan centre, not muted, no mono sum or polarity flip, channels 1/2 -> 3/4, the
    project's pan law, MIDI flags 0, the track's automation mode."""
    return f"AUXRECV {int(source_index)} {AUXRECV_PRE_FX} 1.0 0 0 0 0 0 {SIDECHAIN_DEST_CHANNELS} -1 0 -1"


def _track(lines: list, guid: str, name: str, *, volume: float, pan: float, mute: bool, folder: tuple,
           item: tuple | None, receives: tuple = (), channels: int = 2) -> None:
    ind = "  "
    lines += [f"{ind}<TRACK {guid}", f"{ind}  NAME {_quote(name)}",
              f"{ind}  VOLPAN {_num(volume)} {_num(pan)} -1 -1 1",
              f"{ind}  MUTESOLO {int(mute)} 0 0", f"{ind}  ISBUS {folder[0]} {folder[1]}", f"{ind}  NCHAN {channels}",
              f"{ind}  TRACKID {guid}", *[f"{ind}  {r}" for r in receives]]
    if item is not None:
        _item(lines, ind + "  ", *item)
    lines.append(f"{ind}>")


def _key_trim_db(mix: MixSession, st: StemTrack) -> float:
    """The trim of the stem that keys ``st``'s cut, dB (0 without a cut)."""
    cut = stem_cut(st)
    if cut is None:
        return 0.0
    return float(next(k.settings["trim_db"] for k in mix.stems if k.name == cut["unmask_key"]))


def rpp_text(mix: MixSession) -> str:
    """The ``.RPP`` text of ``mix``."""
    n = len(mix.stems)
    lines = [f"<REAPER_PROJECT 0.1 {_quote('7.0/evomix-' + __version__)} 0",
             f"  SAMPLERATE {mix.sr} 0 0", "  <NOTES 0 2",
             f"    |evomix {__version__}: {mix.name}, genre {mix.genre}. The 'exact' folder plays the processed "
             "stems (the exact master); the 'edit' folder the original stems at evomix's fader, pan and "
             "normalisation gain. EQ and compressor settings below are not loaded into plug-ins (their state "
             "is binary): set them by hand.",
             *[f"    |{s}" for st in mix.stems for s in stem_notes(st, _key_trim_db(mix, st))],
             *[f"    |{s}" for s in master_notes(mix)],
             *[f"    |{s}" for s in reverb_notes(mix)],
             "  >", "  MASTER_NCH 2 2", "  MASTER_VOLUME 1 0 -1 -1 1"]
    rv = mix.reverb
    last = n if rv is not None else n - 1  # the folder's last child: the return when there is one
    edit_guid = _guid(mix.name, "edit")
    _track(lines, edit_guid, f"{mix.name} edit", volume=10.0 ** (mix.normalise_db / 20.0), pan=0.0, mute=True,
           folder=(1, 1), item=None)
    guids = []
    index = {st.name: 1 + k for k, st in enumerate(mix.stems)}  # track index 1 + k is stem k (the edit folder is 0)
    for k, st in enumerate(mix.stems):
        g = _guid(mix.name, "stem", st.name)
        guids.append((g, st))
        cut = stem_cut(st)  # a dynamic cut: its key on channels 3/4 (the cut itself is in the notes only)
        _track(lines, g, st.name, volume=10.0 ** (st.settings["gain_db"] / 20.0), pan=st.settings["pan"], mute=False,
               folder=(2, -1) if k == last else (0, 0), item=(st.name, st.file, st.duration_s),
               receives=() if cut is None else (sidechain_recv(index[cut["unmask_key"]]),),
               channels=2 if cut is None else 4)
    if rv is not None:  # track index 1 + k is stem k (the edit folder is 0)
        return_guid = _guid(mix.name, "reverb-return")
        _track(lines, return_guid, RETURN_NAME, volume=1.0, pan=0.0, mute=True, folder=(2, -1), item=None,
               receives=tuple(auxrecv(1 + k, st.send_db) for k, st in enumerate(mix.stems) if st.send_db is not None))
    _track(lines, _guid(mix.name, "exact"), f"{mix.name} exact", volume=1.0, pan=0.0, mute=False, folder=(1, 1),
           item=None)
    for k, st in enumerate(mix.stems):
        _track(lines, _guid(mix.name, "processed", st.name), f"{st.name} (evomix)", volume=1.0, pan=0.0, mute=False,
               folder=(2, -1) if k == last else (0, 0), item=(f"{st.name} (evomix)", st.processed, mix.duration_s))
    if rv is not None:  # the rendered return: with the processed stems it sums to the master
        name = f"{RETURN_NAME} (evomix)"
        _track(lines, _guid(mix.name, "processed", "reverb-return"), name, volume=1.0, pan=0.0, mute=False,
               folder=(2, -1), item=(name, rv.processed, mix.duration_s))
    for g, st in guids:  # SWS track notes (shown with the SWS extension)
        lines += [f"  <S&M_TRACKNOTES {g}", *[f"    |{s}" for s in stem_notes(st, _key_trim_db(mix, st))], "  >"]
    lines += [f"  <S&M_TRACKNOTES {edit_guid}", *[f"    |{s}" for s in master_notes(mix)], "  >"]
    if rv is not None:
        lines += [f"  <S&M_TRACKNOTES {return_guid}", *[f"    |{s}" for s in reverb_notes(mix)], "  >"]
    lines.append(">")
    return "\n".join(lines) + "\n"


def write_rpp(mix: MixSession, path: Path | str) -> Path:
    """Write ``mix`` as a REAPER project at ``path`` (atomically); paths relative to its folder."""
    return write_text_atomic(path, rpp_text(mix))
