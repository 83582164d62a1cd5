"""What the DAW writers need to know about one exported alternative.

:class:`MixSession` is a plain description (stem files by path relative to the output folder,
their settings in evomix's units, the master's settings and normalisation gain, and the reverb
bus when a send is on: each stem's send level and the return's settings and rendered file); the
writers in ``evomix.output.export.dawproject`` and ``evomix.output.export.reaper`` map it to their
formats.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from evomix.errors import AudioFileError, OptionError
from evomix.output.export.stems import REVERB_RETURN_FILE
from evomix.search.genome import OPTIONAL_DEFAULTS, REVERB_SEED, REVERB_SEND_OFF_DB

DAW_FORMATS = ("dawproject", "reaper")
DAW_SUFFIX = {"dawproject": ".dawproject", "reaper": ".RPP"}


def parse_daw(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"dawproject,reaper"`` or a list of such strings -> ("dawproject", "reaper"), in the order
    given, without repeats; empty for None.

    Raises
    ------
    ParameterError
        An unknown format, naming the valid ones.
    """
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        for name in str(v).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in DAW_FORMATS:
                # name=name: OptionError.for_cli calls the message again, after the loop has been left
                raise OptionError(lambda k, name=name: f"{k('daw')}: unknown format '{name}'; "
                                                       f"choose from {', '.join(DAW_FORMATS)}")
            if name not in out:
                out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class StemTrack:
    """One stem of the session.

    name : stem name (unique).  role : its role.
    file : the original stem file, path relative to the output folder (POSIX separators), or
        absolute when no relative path exists (another drive).
    channels : 1 or 2, of the file.  file_sr : Hz, of the file.  duration_s : s, of the file.
    processed : the post-master processed stem, relative to the output folder.
    settings : the stem's entry of ``params["stems"]`` (trim_db, gain_db, pan, eq, comp).
    send_db : the stem's reverb send, dB in (-40, 0] (post-fader, post-pan, into the one return),
        or None when it is off (at ``REVERB_SEND_OFF_DB``: no signal) or the params have no reverb.
    """

    name: str
    role: str
    file: str
    channels: int
    file_sr: int
    duration_s: float
    processed: str
    settings: dict
    send_db: float | None = None


@dataclass(frozen=True)
class ReverbReturn:
    """The reverb bus's one stereo return (``evomix.engine.dsp.reverb``, a feedback delay network),
    present when at least one send is on.

    decay_s : RT60 at low frequencies, s.  predelay_ms : ms.
    damping : the RT60 ratio at 8 kHz (``DAMPING_REF_HZ``) to ``decay_s``, in (0, 1].
    highpass_hz : the return's high-pass cut-off (RBJ, Q 0.707), Hz.  seed : the delay-line seed.
    processed : the rendered post-master return (``reverb-return.wav`` in the processed-stems
        folder), relative to the output folder: with the processed stems it sums to the master.
    """

    decay_s: float
    predelay_ms: float
    damping: float
    highpass_hz: float
    seed: int
    processed: str


@dataclass(frozen=True)
class MixSession:
    """One alternative as a DAW session.

    name : "alt-01".  sr : session rate, Hz.  duration_s : session length (= processed stems), s.
    genre : str.  target_lufs : LUFS.  ceiling_dbtp : dBTP.
    normalise_db : the loudness normalisation gain the exact render applied, dB.
    limiter_gr_db : its limiter's peak gain reduction, dB >= 0.
    stems : StemTrack per stem, session order.  master : ``params["master"]`` (eq, comp).
    reverb : the reverb return, or None when every send is off (then nothing of the bus is written).
    """

    name: str
    sr: int
    duration_s: float
    genre: str
    target_lufs: float
    ceiling_dbtp: float
    normalise_db: float
    limiter_gr_db: float
    stems: tuple
    master: dict
    reverb: ReverbReturn | None = None


def _send_db(settings: dict) -> float | None:
    """A stem's send in dB, or None when off (at or below ``REVERB_SEND_OFF_DB``) or absent."""
    db = settings.get("reverb_send_db")
    return None if db is None or float(db) <= REVERB_SEND_OFF_DB else float(db)


def _reverb(master: dict, processed_folder: str) -> ReverbReturn:
    """The return's settings from ``params["master"]["reverb"]`` (the defaults where absent)."""
    r = master.get("reverb") or {}
    return ReverbReturn(
        decay_s=float(r.get("decay_s", OPTIONAL_DEFAULTS["reverb_decay_s"])),
        predelay_ms=float(r.get("predelay_ms", OPTIONAL_DEFAULTS["reverb_predelay_ms"])),
        damping=float(r.get("damping", OPTIONAL_DEFAULTS["reverb_damping"])),
        highpass_hz=float(r.get("highpass_hz", OPTIONAL_DEFAULTS["reverb_highpass_hz"])),
        seed=int(r.get("seed", REVERB_SEED)), processed=f"{processed_folder}/{REVERB_RETURN_FILE}")


def _relative(path: Path, out: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(out).resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        return Path(path).resolve().as_posix()


def describe(session, params_dict: dict, name: str, out: Path, *, processed_folder: str, genre: str,
             target_lufs: float, ceiling_dbtp: float, normalise_db: float, limiter_gr_db: float) -> MixSession:
    """The :class:`MixSession` of one alternative whose files are (to be) written under ``out``.

    Raises
    ------
    AudioFileError
        An original stem file can no longer be read (its length and rate are taken from it).
    """
    tracks = []
    for stem_name, path, role in zip(session.names, session.paths, session.roles):
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioFileError(f"{path}: cannot read the stem for the DAW session ({exc})") from exc
        tracks.append(StemTrack(
            name=stem_name, role=role, file=_relative(path, out), channels=int(min(info.channels, 2)),
            file_sr=int(info.samplerate), duration_s=float(info.frames) / float(info.samplerate),
            processed=f"{processed_folder}/{stem_name}.wav", settings=params_dict["stems"][stem_name],
            send_db=_send_db(params_dict["stems"][stem_name])))
    reverb = _reverb(params_dict["master"], processed_folder) if any(t.send_db is not None for t in tracks) else None
    return MixSession(name=name, sr=int(session.sr), duration_s=session.n_samples / float(session.sr), genre=genre,
                      target_lufs=float(target_lufs), ceiling_dbtp=float(ceiling_dbtp),
                      normalise_db=float(normalise_db), limiter_gr_db=float(limiter_gr_db),
                      stems=tuple(tracks), master=params_dict["master"], reverb=reverb)


