"""What the DAW writers need to know about one exported alternative.

:class:`MixSession` is a plain description (stem files by path relative to the output folder,
their settings in evomix's units, the master's settings and normalisation gain); the writers in
``evomix.output.export.dawproject`` and ``evomix.output.export.reaper`` map it to their formats.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from evomix.errors import AudioFileError, OptionError

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
    """

    name: str
    role: str
    file: str
    channels: int
    file_sr: int
    duration_s: float
    processed: str
    settings: dict


@dataclass(frozen=True)
class MixSession:
    """One alternative as a DAW session.

    name : "alt-01".  sr : session rate, Hz.  duration_s : session length (= processed stems), s.
    genre : str.  target_lufs : LUFS.  ceiling_dbtp : dBTP.
    normalise_db : the loudness normalisation gain the exact render applied, dB.
    limiter_gr_db : its limiter's peak gain reduction, dB >= 0.
    stems : StemTrack per stem, session order.  master : ``params["master"]`` (eq, comp).
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
            processed=f"{processed_folder}/{stem_name}.wav", settings=params_dict["stems"][stem_name]))
    return MixSession(name=name, sr=int(session.sr), duration_s=session.n_samples / float(session.sr), genre=genre,
                      target_lufs=float(target_lufs), ceiling_dbtp=float(ceiling_dbtp),
                      normalise_db=float(normalise_db), limiter_gr_db=float(limiter_gr_db),
                      stems=tuple(tracks), master=params_dict["master"])


