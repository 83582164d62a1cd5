"""Audio input/output: the only module that touches audio files.

Everything outside this module sees audio as ``(channels, samples)`` arrays; the
transposition from/to soundfile's ``(frames, channels)`` layout happens here and
nowhere else.  Loading a session reads a list of files and/or folders, checks
each file, brings all stems to one sample rate and one length, and guesses a
mixing role for each stem from its file name.

Writes are atomic: the data goes to a hidden temporary file in the destination
folder, which is then renamed over the destination with :func:`os.replace`, so a
crash or a full disk never leaves a half-written output behind.
"""
from __future__ import annotations

import errno
import os
import re
import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from evomix.core.compiled import lazy_njit
from evomix.errors import AudioFileError, ParameterError
from evomix.io.files import atomic_file

__all__ = [
    "ROLES",
    "AUDIO_SUFFIXES",
    "UNDECODABLE_SUFFIXES",
    "LOSSY_SUBTYPES",
    "OUTPUT_FORMATS",
    "SILENCE_PEAK",
    "SHORT_STEM_S",
    "Session",
    "guess_role",
    "expand_paths",
    "stem_names",
    "read_audio",
    "load_session",
    "write_audio",
]

ROLES = ("vocal", "backing_vocal", "drums", "kick", "snare", "toms", "hihat", "overheads", "room", "percussion",
         "bass", "guitar", "keys", "piano", "synth", "pad", "lead", "fx", "other")
"""Mixing roles a stem can have; ``"other"`` is the fallback.

``vocal`` is the lead vocal, ``backing_vocal`` every vocal under it (harmonies, doubles, choir,
ooh/aah). ``drums`` is a drum kit (or drum bus) as one stem; a kit recorded as separate stems has
``kick``, ``snare``, ``toms``, ``hihat``, ``overheads`` (the stereo pair over the kit) and
``room`` (room / ambience mics), plus ``percussion`` (shaker, tambourine, congas, ...)."""

# libsndfile's formats (``soundfile.available_formats()`` names) and the file suffixes they go by,
# the common ones first. RAW (headerless) is not listed: it cannot be read without being told its
# rate, channels and sample type.
_FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "WAV": (".wav", ".wave"), "FLAC": (".flac",), "AIFF": (".aif", ".aiff", ".aifc"), "OGG": (".ogg", ".oga"),
    "MP3": (".mp3",), "CAF": (".caf",), "W64": (".w64",), "RF64": (".rf64",), "AU": (".au", ".snd"),
    "IRCAM": (".sf",), "NIST": (".nist", ".sph"), "VOC": (".voc",), "SVX": (".iff", ".svx", ".8svx"),
    "PAF": (".paf",), "MAT4": (".mat",), "MAT5": (".mat",), "PVF": (".pvf",), "XI": (".xi",), "HTK": (".htk",),
    "SDS": (".sds",), "AVR": (".avr",), "SD2": (".sd2",), "WVE": (".wve",), "MPC2K": (".mpc",),
}
_FORMAT_LABELS = {"MP3": "MP3 (MPEG audio)", "OGG": "Ogg", "CAF": "CAF", "W64": "Wave64", "RF64": "RF64"}


def _decodable_suffixes() -> tuple[tuple[str, ...], dict[str, str]]:
    """The suffixes of every format this machine's libsndfile decodes, and {suffix: format} of the
    ones it lacks (an older libsndfile without MP3 or Opus)."""
    available = set(sf.available_formats())
    formats = dict(_FORMAT_SUFFIXES)
    if "OGG" in available and "OPUS" in sf.available_subtypes("OGG"):
        formats["OGG"] = (*formats["OGG"], ".opus")
    readable = list(dict.fromkeys(x for fmt, suffixes in formats.items() if fmt in available for x in suffixes))
    missing = {x: _FORMAT_LABELS.get(fmt, fmt) for fmt, suffixes in formats.items() if fmt not in available
               for x in suffixes if x not in readable}
    if ".opus" not in readable:
        missing[".opus"] = "Opus"
    return tuple(readable), missing


AUDIO_SUFFIXES, _MISSING_FORMATS = _decodable_suffixes()
"""Suffixes (lower case) of every format the installed libsndfile decodes: a folder's files with one
of them are its stems (case-insensitive). The same formats are read when a file is given by name
(whatever its suffix: libsndfile recognises a format by its content)."""

UNDECODABLE_SUFFIXES: dict[str, str] = {
    ".m4a": "AAC or ALAC (M4A)", ".mp4": "MP4", ".aac": "AAC", ".alac": "ALAC", ".wma": "WMA",
    ".ape": "Monkey's Audio", ".wv": "WavPack", ".dsf": "DSD", ".dff": "DSD", ".mka": "Matroska audio",
    ".ac3": "AC-3", ".amr": "AMR", ".tta": "TTA", ".mpga": "MPEG audio", ".mp2": "MPEG audio",
    **_MISSING_FORMATS,
}
"""Suffixes of audio formats libsndfile does not decode here, {suffix: format}: such a file is a
stem all the same (in a folder too), refused with one line saying to convert it, never skipped."""

LOSSY_SUBTYPES: dict[str, str] = {
    "MPEG_LAYER_III": "MP3", "MPEG_LAYER_II": "MP2", "MPEG_LAYER_I": "MPEG Layer I", "VORBIS": "Ogg Vorbis",
    "OPUS": "Opus", "GSM610": "GSM 6.10", "IMA_ADPCM": "IMA ADPCM", "MS_ADPCM": "MS ADPCM",
    "VOX_ADPCM": "OKI ADPCM", "G721_32": "G.721 ADPCM", "G723_24": "G.723 ADPCM", "G723_40": "G.723 ADPCM",
    "NMS_ADPCM_16": "NMS ADPCM", "NMS_ADPCM_24": "NMS ADPCM", "NMS_ADPCM_32": "NMS ADPCM",
    "ULAW": "8-bit u-law", "ALAW": "8-bit A-law",
}
"""libsndfile subtypes that are lossy codings, {subtype: name}: a stem in one is loaded with a
warning (``Session.warnings``: ``"vocal.mp3: lossy (MP3) source; ..."``)."""

OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}
"""Output suffix -> soundfile ``format`` for :func:`write_audio`."""

SILENCE_PEAK = 1e-6
"""Peak amplitude (linear, -120 dBFS) below which a stem counts as silent."""

SHORT_STEM_S = 0.5
"""Stems shorter than this (seconds) among longer ones get a warning."""

MIN_SR = 8000
MAX_SR = 384000
"""Accepted range (Hz) for an explicitly requested session sample rate."""


# --------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Session:
    """A set of stems at one sample rate and one length, ready to be mixed.

    Attributes
    ----------
    sr : int
        Sample rate in Hz shared by every stem.
    names : tuple of str
        Unique stem names, one per stem: the file's stem (``Path.stem``), with
        ``-2``, ``-3``, ... appended when two files share a stem name.
    roles : tuple of str
        One of :data:`ROLES` per stem.
    audio : numpy.ndarray or None
        Shape ``(stems, 2, samples)``, float32, linear full scale (+-1.0).
        Mono stems are duplicated into both channels.  Read-only.  ``None`` for
        a session too large to hold in memory (see ``load_session(keep_audio=)``):
        then :meth:`stem` reads each stem from its file when it is needed.
    is_mono : numpy.ndarray
        Shape ``(stems,)``, bool: True where the file had exactly one channel.
        Read-only.
    paths : tuple of pathlib.Path
        The file each stem was read from, as given/expanded (not resolved).
    warnings : tuple of str
        Human-readable one-line warnings gathered while loading.
    silent : tuple of str
        Names of stems whose peak is below :data:`SILENCE_PEAK` (kept).

    Notes
    -----
    ``eq=False``: sessions compare and hash by identity, since comparing the
    audio arrays element-wise is neither cheap nor meaningful as ``==``.
    """

    sr: int
    names: tuple[str, ...]
    roles: tuple[str, ...]
    audio: np.ndarray
    is_mono: np.ndarray
    paths: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    silent: tuple[str, ...] = ()
    length: int | None = None  # samples per stem; required when ``audio`` is None

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.audio is None:
            if self.length is None or self.length <= 0:
                raise ParameterError("Session: without audio, length (samples) must be given")
        elif self.audio.ndim != 3 or self.audio.shape[:2] != (n, 2):
            raise ParameterError(
                f"Session: audio must have shape ({n}, 2, samples), got {self.audio.shape}")
        if not (len(self.roles) == len(self.paths) == self.is_mono.shape[0] == n):
            raise ParameterError("Session: names, roles, paths and is_mono must have one entry per stem")
        bad = [r for r in self.roles if r not in ROLES]
        if bad:
            raise ParameterError(f"Session: unknown role {bad[0]!r}; choose from {', '.join(ROLES)}")

    @property
    def n_stems(self) -> int:
        """Number of stems."""
        return len(self.names)

    @property
    def n_samples(self) -> int:
        """Length of every stem in samples (per channel)."""
        return int(self.audio.shape[2]) if self.audio is not None else int(self.length)

    def stem(self, i: int) -> np.ndarray:
        """Stem ``i`` as (2, samples) float32 at the session rate, padded to the session length.

        From memory when the session holds its audio, else read (and resampled) from its file.
        """
        if self.audio is not None:
            return self.audio[i]
        x, rate = read_audio(self.paths[i], dtype="float32")
        if rate != self.sr:
            from scipy.signal import resample_poly  # here, not at import: scipy.signal takes ~0.9 s to import
            g = gcd(self.sr, rate)
            x = resample_poly(x, self.sr // g, rate // g, axis=1)
        out = np.zeros((2, self.n_samples), dtype=np.float32)
        m = min(x.shape[1], self.n_samples)
        out[:, :m] = x[:, :m]  # a mono (1, m) row fills both channels
        return out

    @property
    def duration_s(self) -> float:
        """Length of every stem in seconds."""
        return self.n_samples / self.sr


# --------------------------------------------------------------------------
# Role guessing
# --------------------------------------------------------------------------

# Checked in this order; the first rule that matches wins.  Each rule is
# (role, whole-token keywords, substring keywords).  Substring keywords are
# long enough not to occur inside unrelated words; short abbreviations
# ("sn", "oh", "sub", "tom", "bv", ...) only match as whole tokens, so "subtle"
# is not "sub" and "Snare Bottom" has no "tom".
_PHRASES = (("bass drum", "kick"), ("lead vocal", "vocal"), ("lead vox", "vocal"),
            ("backing track", "other"), ("over head", "overheads"))
_ROLE_RULES: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    ("vocal", frozenset({"vox", "vocal", "voice", "vs", "vo", "voc", "adlib", "adlibs", "singer"}),
     ("vocal", "vox", "voice")),
    ("kick", frozenset({"kick", "bd", "kik", "kck"}), ("kick",)),
    ("snare", frozenset({"snare", "sn", "snr", "sd"}), ("snare",)),
    ("toms", frozenset({"tom", "tomtom", "floortom", "racktom", "hitom", "midtom", "lotom", "lowtom", "ftom",
                        "rtom"}), ()),
    ("hihat", frozenset({"hh", "hat", "hats", "hihat", "hhat"}), ("hihat",)),
    ("overheads", frozenset({"oh", "ohs", "ohl", "ohr", "overhead", "ovh", "ovhd", "ovhds"}), ("overhead",)),
    ("room", frozenset({"room"}), ()),
    ("percussion", frozenset({"perc", "percs", "percussion", "shaker", "shkr", "tamb", "tambo", "tambourine",
                              "tamborine", "conga", "bongo", "cowbell", "clave", "guiro", "cabasa", "cajon",
                              "djembe", "timbale", "agogo", "maraca", "maracas", "woodblock"}),
     ("percussion", "shaker", "tambourine", "conga", "bongo", "cowbell")),
    ("drums", frozenset({"drum", "drums", "drm", "kit", "cymbal", "cymbals", "ride", "crash", "clap", "claps"}),
     ("drum",)),
    ("bass", frozenset({"bass", "sub", "808", "bs"}), ("bass",)),
    ("guitar", frozenset({"gtr", "gtrs", "guitar", "guitars", "gtrl", "gtrr"}), ("guitar",)),
    ("keys", frozenset({"keys", "key", "chord", "chords", "organ", "rhodes", "wurli", "wurlitzer", "clav", "epiano",
                        "ep"}),
     ("organ", "rhodes", "wurli")),
    ("piano", frozenset({"piano", "pno", "pn"}), ("piano",)),
    ("synth", frozenset({"synth", "synths", "arp", "arps", "seq"}), ("synth",)),
    ("pad", frozenset({"pad", "pads", "strings", "string", "str", "ensemble"}), ("strings",)),
    ("lead", frozenset({"lead", "leads", "melody", "mel"}), ("melody",)),
    ("fx", frozenset({"fx", "sfx", "riser", "risers", "impact", "impacts", "sweep", "whoosh",
                      "noise", "uplifter", "downlifter"}),
     ("riser", "impact", "whoosh")),
)
# Backing vocals, checked before every rule above: a token that only means backing vocals
# ("BGV", "BVox"), or a vocal word with a backing qualifier ("Vox Back", "Vocal Dbl", "Harmony Vox",
# "BackingVocals"). "Vox B" is take B of the vocal, not a backing vocal: a lone "b" qualifies only
# glued to the vocal word ("bvox"). Doubles of the lead count as backing vocals: they sit under it.
_BV_WORDS = frozenset({"bv", "bvs", "bgv", "bgvs", "bkv", "bkvs", "bvx", "bvox", "bgvox", "bvoc", "bvocs"})
_BV_QUALIFIERS = frozenset({"back", "backing", "backings", "backup", "backups", "bg", "bgs", "bkg", "bkgd", "bck",
                            "background", "backgrounds", "double", "doubles", "doubled", "dbl", "dbls", "dbld",
                            "harmony", "harmonies", "harm", "harms", "choir", "choirs", "stack", "stacks", "gang",
                            "ensemble", "ooh", "oohs", "aah", "aahs", "ahh", "ahhs"})
_VOCAL_STEMS = ("vocals", "vocal", "voices", "voice", "vocs", "voc", "vox")  # longest first
# Alone (after every other rule: "Harmony Gtr" is a guitar, "Choir Pad" a pad), these mean backing vocals.
_BV_ALONE = frozenset({"backing", "backings", "backup", "backups", "harmony", "harmonies", "choir", "choirs",
                       "ooh", "oohs", "aah", "aahs", "ahh", "ahhs"})
# A room (or ambience) mic belongs to the drums unless the name says whose it is ("Gtr Room" is a guitar;
# "Vocal Room", "Kick Room" and "Snare Room" are caught by their earlier rules); "amb", "ambience" are
# the drums' room only next to a drum word ("Drum Amb", "Kit Ambience"): alone they are as likely an
# ambient pad or effect.
_ROOM_VETO = ("bass", "guitar", "keys", "piano", "synth", "pad", "lead", "fx")
_AMBIENCE = frozenset({"amb", "ambience", "ambiance", "ambient", "ambi"})
_DRUM_WORDS = frozenset({"drum", "drums", "drm", "kit", "dr"})
_RULES_BY_ROLE = {rule[0]: rule for rule in _ROLE_RULES}
_CAMEL_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])")  # "LeadVocal", "Tom2"
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


def _word_in(tok: str, words: frozenset[str]) -> bool:
    """``tok`` is one of ``words``, or (4+ letters ending in ``s``) its plural."""
    return tok in words or (len(tok) > 3 and tok.endswith("s") and tok[:-1] in words)


def _rule_matches(role: str, tokens: Sequence[str]) -> bool:
    """Whether the :data:`_ROLE_RULES` rule of ``role`` matches one of ``tokens``."""
    _, words, substrings = _RULES_BY_ROLE[role]
    return any(_word_in(t, words) or any(s in t for s in substrings) for t in tokens)


def _is_backing_vocal(tokens: Sequence[str]) -> bool:
    """A backing-vocal word, a vocal word glued to a backing qualifier, or a vocal word and a qualifier."""
    for t in tokens:
        if _word_in(t, _BV_WORDS):
            return True
        for w in _VOCAL_STEMS:
            if t.endswith(w) and (t[: -len(w)] in ("b", "bk") or _word_in(t[: -len(w)], _BV_QUALIFIERS)):
                return True  # "bvox", "backingvocals"
            if t.startswith(w) and _word_in(t[len(w):], _BV_QUALIFIERS):
                return True  # "voxdbl" (but "voxb" is take B)
    return _rule_matches("vocal", tokens) and any(_word_in(t, _BV_QUALIFIERS) for t in tokens)


def guess_role(name: str) -> str:
    """Guess a stem's mixing role from its file or stem name.

    Parameters
    ----------
    name : str
        A file name (``"Lead Vox.wav"``), stem name (``"bass_DI"``) or path;
        only the last path component is used and a trailing audio suffix is
        ignored.

    Returns
    -------
    str
        One of :data:`ROLES`; ``"other"`` if no rule matches.

    Notes
    -----
    Matching is case-insensitive.  The name is split into tokens on runs of
    characters other than ``a-z0-9``, between a lower-case and an upper-case
    letter (``"LeadVocal"`` -> ``lead``, ``vocal``) and between a letter and a
    digit after it (``"Tom2"`` -> ``tom``, ``2``; ``"bass_DI"`` -> ``bass``, ``di``).
    Short abbreviations match whole tokens only (``"sub"`` matches ``"Sub 1"``
    but not ``"subtle"``; ``"tom"`` not ``"Snare Bottom"``); a few long keywords
    (``"vocal"``, ``"kick"``, ``"guitar"``, ...) also match inside a token
    (``"leadvocal"``).  A token ending in ``s`` also matches its singular.

    Order: backing vocals first (``"BGV"``, ``"BVox 2"``, ``"Vox Back"``,
    ``"Lead Vox Dbl"``, ``"Harmony Vox"``: a backing-vocal word, or a vocal word
    with a backing qualifier), then the phrases (``"Bass Drum"`` -> kick,
    ``"Lead Vox"`` -> vocal, ``"Backing Track"`` -> other), then the rules in
    the order vocal, kick, snare, toms, hihat, overheads, room, percussion,
    drums, bass, guitar, keys, piano, synth, pad, lead, fx; the first match
    wins (``"Synth Bass"`` -> bass, ``"Drum Room"`` -> room, ``"OH L"`` ->
    overheads).  A room mic named after another instrument is that
    instrument's (``"Gtr Room"`` -> guitar); ``"amb"``/``"ambience"`` is the
    drums' room only next to a drum word.  Last, ``"Backing"``, ``"Harmony"``,
    ``"Choir"``, ``"Oohs"`` alone are backing vocals (``"Choir Pad"`` -> pad).
    The lead vocal is ``vocal``; a numbered one (``"vocal_2"``) too.
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in AUDIO_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    tokens = [t for t in _TOKEN_SPLIT.split(_CAMEL_SPLIT.sub(" ", base).lower()) if t]
    if _is_backing_vocal(tokens):
        return "backing_vocal"
    joined = " ".join(tokens)
    for phrase, role in _PHRASES:
        if re.search(rf"(^| ){re.escape(phrase)}( |$)", joined):
            return role
    for role, _, _ in _ROLE_RULES:
        if role == "room":
            drum_ambience = any(t in _AMBIENCE for t in tokens) and (
                any(_word_in(t, _DRUM_WORDS) or "drum" in t for t in tokens))
            if (_rule_matches("room", tokens) or drum_ambience) and not any(
                    _rule_matches(r, tokens) for r in _ROOM_VETO):
                return "room"
        elif _rule_matches(role, tokens):
            return role
    if any(_word_in(t, _BV_ALONE) for t in tokens):
        return "backing_vocal"
    return "other"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def _unreachable(path: Path, missing: str) -> str | None:
    """Why ``path`` cannot be used, or None when it can be reached: a symbolic link loop, a broken
    symbolic link, a folder on its way that cannot be searched, or ``missing`` when it does not exist."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            if path.is_symlink():
                return "is a symbolic link loop (following it leads back to itself)"
            return "cannot be reached: its path goes through a symbolic link loop"
        if path.is_symlink():
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"is a broken symbolic link (to {target}, which does not exist)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return missing
        return f"cannot be accessed ({exc.strerror or exc})"
    except ValueError as exc:  # an embedded NUL byte
        return f"is not a valid path ({exc})"
    return None


def _is_stem_name(name: str) -> bool:
    """Whether a folder's entry ``name`` is a stem by the one rule: not hidden, and the suffix of an
    audio format (one libsndfile decodes, or one it does not, to be refused rather than skipped)."""
    suffix = os.path.splitext(name)[1].lower()
    return not name.startswith(".") and (suffix in AUDIO_SUFFIXES or suffix in UNDECODABLE_SUFFIXES)


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Turn command-line paths into a list of audio files.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Files and/or folders.

    Returns
    -------
    list of pathlib.Path
        Each folder is replaced by its audio files: those whose suffix is one of an audio format
        (:data:`AUDIO_SUFFIXES`, every format the installed libsndfile decodes, MP3 and Opus
        included; or :data:`UNDECODABLE_SUFFIXES`, refused when read, never skipped),
        case-insensitive; hidden files and other files (text, JSON, ...) skipped;
        not recursive; sorted by name case-insensitively.  Files are kept as
        given, whatever their suffix (soundfile decides later whether they are
        audio).  Order is preserved; duplicates are *not* removed here.

    Raises
    ------
    AudioFileError
        If a path does not exist, is a symbolic link loop or a broken link, cannot be accessed, or
        a folder holds no audio files (or an audio file in it is a loop or a broken link).
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        why = _unreachable(path, "no such file or folder")
        if why is not None:
            raise AudioFileError(f"{path}: {why}")
        if path.is_dir():
            try:
                entries = [e for e in path.iterdir() if _is_stem_name(e.name)]
            except OSError as exc:
                raise AudioFileError(f"{path}: cannot list folder ({exc.strerror or exc})") from exc
            files = []
            for e in entries:
                why = _unreachable(e, "no such file")  # a loop or a broken link named like a stem is reported
                if why is not None:
                    raise AudioFileError(f"{e}: {why}")
                if e.is_file():  # a folder named like a stem is not one
                    files.append(e)
            if not files:
                raise AudioFileError(
                    f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES[:10])}, ...: every format libsndfile "
                    f"decodes) found")
            out.extend(sorted(files, key=lambda e: (e.name.casefold(), e.name)))
        else:
            out.append(path)
    return out


def _chunks(fh, *, big_endian: bool = False):
    """Each chunk of a RIFF (little-endian sizes) or IFF/AIFF (``big_endian``) file after its 12-byte
    header: yields ``(id, size)`` with the file at the chunk's body; the caller reads what it needs,
    and the walk then seeks past the rest (chunks are word-aligned). Stops at a short header."""
    size_format = ">I" if big_endian else "<I"
    while True:
        ch = fh.read(8)
        if len(ch) < 8:
            return
        cid, size = ch[:4], struct.unpack(size_format, ch[4:])[0]
        body = fh.tell()
        yield cid, size
        fh.seek(body + size + (size & 1), os.SEEK_SET)


def _declared_frames(path: Path) -> int | None:
    """Frame count promised by a WAV or AIFF header, or None if unknown.

    Only the chunk headers are read (a few small reads, no sample data).
    Returns None for other formats, for RF64/streaming placeholders (data size
    0 or 0xFFFFFFFF) and for headers this simple parser does not understand;
    the caller then trusts libsndfile.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12:
                return None
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                block_align = None
                for cid, size in _chunks(fh):
                    if cid == b"fmt ":
                        body = fh.read(min(size, 16))
                        if len(body) < 14:
                            return None
                        block_align = struct.unpack("<H", body[12:14])[0]
                    elif cid == b"data":
                        if not block_align or size in (0, 0xFFFFFFFF):
                            return None
                        return size // block_align
                return None
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                for cid, _size in _chunks(fh, big_endian=True):
                    if cid == b"COMM":
                        body = fh.read(6)
                        if len(body) < 6:
                            return None
                        return struct.unpack(">I", body[2:6])[0]
                return None
    except (OSError, struct.error):
        return None
    return None


# WAVE_FORMAT_EXTENSIBLE's sub-format GUID for integer PCM (ksmedia.h KSDATAFORMAT_SUBTYPE_PCM)
_PCM_GUID = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def _pcm_wav_layout(path: Path) -> tuple[int, int, int, int] | None:
    """``(data offset, frames, channels, bytes per sample)`` of a plain little-endian RIFF/WAVE file of
    16- or 24-bit integer PCM (format tag 1, or WAVE_FORMAT_EXTENSIBLE with the PCM sub-format) whose
    data chunk is complete in the file; None for anything else (the caller then lets libsndfile read it).
    Only the chunk headers are read (Microsoft RIFF/WAVE: 'fmt ' and 'data' chunks, word-aligned)."""
    try:
        size_on_disk = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            fmt = None
            for cid, size in _chunks(fh):
                if cid == b"fmt ":
                    body = fh.read(size)
                    if len(body) < 16:
                        return None
                    tag, channels, _rate, _bps, align, bits = struct.unpack("<HHIIHH", body[:16])
                    if tag == 0xFFFE:  # extensible: the real format is the sub-format GUID
                        if len(body) < 40 or body[24:40] != _PCM_GUID:
                            return None
                        tag = 1
                    if tag != 1 or bits not in (16, 24) or channels not in (1, 2) or align != channels * bits // 8:
                        return None
                    fmt = (channels, bits // 8)
                elif cid == b"data":
                    if fmt is None or size in (0, 0xFFFFFFFF):
                        return None
                    offset = fh.tell()
                    if offset + size > size_on_disk:
                        return None  # truncated: libsndfile's path reports it
                    channels, width = fmt
                    return offset, size // (channels * width), channels, width
            return None
    except (OSError, struct.error):
        return None


@lazy_njit
def _decode_pcm(raw, width, channels, out):  # (frames * channels * width,) uint8 -> out (rows, m)
    """Interleaved little-endian signed PCM (Microsoft RIFF/WAVE), ``channels`` per frame and ``width``
    (2 or 3) bytes per sample, into ``out`` (rows, m) scaled to full scale 1.0 (``v / 2^15`` or
    ``v / 2^23``): the first ``m`` frames, a mono file's one channel into every row. Every such value
    is exact in float32 (at most 24 significant bits, a power-of-two scale), so the samples are those
    libsndfile's ``sf_read_float`` gives, bit for bit (``tests/engine/test_wav_decode.py`` compares them)."""
    rows, m = out.shape
    frames = raw.shape[0] // (channels * width)
    scale = 1.0 / 32768.0 if width == 2 else 1.0 / 8388608.0
    bits = 8 * width
    for c in range(channels):  # one channel at a time: the loop writes one row, in order
        step = channels * width
        k = c * width
        for i in range(min(frames, m)):
            v = np.int64(raw[k + width - 1]) << 8 | np.int64(raw[k + width - 2])
            if width == 3:
                v = v << 8 | np.int64(raw[k])
            v -= (v >> (bits - 1)) << bits  # two's complement: the top bit set means v - 2^bits
            k += step
            out[c, i] = v * scale  # exact, in float64 and in float32
    if channels == 1:
        for r in range(1, rows):
            out[r, : min(frames, m)] = out[0, : min(frames, m)]


def _read_pcm_wav(path: Path, frames: int, channels: int, dtype: str,
                  into: np.ndarray | None = None) -> np.ndarray | None:
    """A 16/24-bit PCM WAV (:func:`_pcm_wav_layout`) decoded by a compiled loop from its raw bytes: as
    (channels, frames) ``dtype``, or with ``into`` (rows, m) its first ``m`` frames written there (a mono
    file into every row) and ``into`` returned; None when the file is not one (or its header disagrees
    with libsndfile's)."""
    layout = _pcm_wav_layout(path)
    if layout is None:
        return None
    offset, n_frames, n_ch, width = layout
    if n_frames != frames or n_ch != channels:
        return None
    if into is not None and (into.dtype != np.dtype(dtype) or into.ndim != 2 or into.shape[0] < channels):
        return None
    try:  # mapped, not copied: the decoder reads the page cache itself
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(frames * channels * width,))
    except (OSError, ValueError):
        return None
    out = np.empty((channels, frames), dtype=dtype) if into is None else into
    _decode_pcm(raw, width, channels, out)
    return out


def read_audio(path: Path | str, *, dtype: str = "float64", into: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Read one mono or stereo audio file.

    Parameters
    ----------
    path : str or pathlib.Path
        Any file libsndfile can decode (WAV, FLAC, AIFF, OGG Vorbis/Opus, MP3, ...), whatever its suffix.
    dtype : "float64" or "float32", keyword-only
        Sample type of the result (libsndfile decodes straight to it).
    into : numpy.ndarray, optional, keyword-only
        ``(rows, m)`` array of ``dtype``: a 16/24-bit PCM WAV's first ``m`` frames are decoded
        straight into it (a mono file into every row; the rest of ``into`` is left alone) and
        ``into`` itself is returned; any other file is returned as without it (``into`` untouched).

    Returns
    -------
    audio : numpy.ndarray
        Shape ``(channels, samples)`` with channels 1 or 2, ``dtype``, linear
        full scale.
    sr : int
        Sample rate in Hz.

    Raises
    ------
    AudioFileError
        Message starts with the path: missing file, a symbolic link loop or
        broken link, a folder, unreadable, a format libsndfile does not decode
        (:data:`UNDECODABLE_SUFFIXES`: convert it),
        not audio / corrupt (libsndfile's reason is quoted), truncated WAV or
        AIFF (the header promises more frames than the file holds), more than
        2 channels, zero samples, NaN or infinite samples.

    Notes
    -----
    libsndfile silently shortens a truncated WAV/AIFF to the frames present,
    so those two formats are checked against their header here.  A truncated
    FLAC raises inside libsndfile (reported as corrupt).  A truncated OGG
    Vorbis file decodes silently to the pages present; that cannot be detected
    cheaply and is accepted.

    A 16- or 24-bit integer PCM WAV is decoded from its bytes by a compiled loop (the same samples,
    several times faster than libsndfile's conversion; :func:`_decode_pcm`).
    """
    path = Path(path)
    why = _unreachable(path, "no such file")
    if why is not None:
        raise AudioFileError(f"{path}: {why}")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    try:
        with sf.SoundFile(path) as f:
            channels, frames, sr = f.channels, f.frames, int(f.samplerate)
            fmt = f.format
            if channels > 2:
                raise AudioFileError(
                    f"{path}: has {channels} channels; evomix takes mono or stereo stems")
            if fmt in ("WAV", "WAVEX", "AIFF"):
                declared = _declared_frames(path)
                if declared is not None and declared > frames:
                    raise AudioFileError(
                        f"{path}: truncated: header declares {declared} frames "
                        f"but only {frames} are present")
            if frames == 0:
                raise AudioFileError(f"{path}: is empty (0 samples)")
            if fmt in ("WAV", "WAVEX") and f.subtype in ("PCM_16", "PCM_24") and dtype in ("float32", "float64"):
                fast = _read_pcm_wav(path, frames, channels, dtype, into)  # integer PCM: always finite
                if fast is not None:
                    return fast, sr
            data = f.read(dtype=dtype, always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioFileError(_undecodable(path) or (
            f"{path}: not a readable audio file or corrupt ({exc.error_string.strip().rstrip('.')})")) from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(_undecodable(path) or f"{path}: not a readable audio file or corrupt ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: is empty (0 samples)")
    if data.shape[0] < frames:
        raise AudioFileError(
            f"{path}: truncated or corrupt: expected {frames} frames, decoded {data.shape[0]}")
    if not np.isfinite(data).all():
        raise AudioFileError(f"{path}: contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), sr


def _undecodable(path: Path) -> str | None:
    """The message for a file libsndfile cannot open whose suffix names a format it does not decode."""
    fmt = UNDECODABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        return None
    return (f"{path}: {fmt} files cannot be decoded by libsndfile {sf.__libsndfile_version__}, which evomix reads "
            f"audio with; convert it to WAV or FLAC")


def _unique_names(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    """Stem names for ``paths``, made unique with ``-2``, ``-3`` suffixes.

    Returns the names and a warning for each renamed stem.
    """
    taken = {p.stem for p in paths}
    used: set[str] = set()
    names, warnings = [], []
    for p in paths:
        name = p.stem
        if name in used:
            k = 2
            while f"{p.stem}-{k}" in used or f"{p.stem}-{k}" in taken:
                k += 1
            name = f"{p.stem}-{k}"
            warnings.append(f"{p}: another stem is already named '{p.stem}'; this one is '{name}'")
        used.add(name)
        names.append(name)
    return names, warnings


def _stem_files(paths: Sequence[Path | str]) -> tuple[list[Path], list[str], list[str]]:
    """The stem files of ``paths`` (:func:`expand_paths`; a file given twice is kept once), their
    unique stem names and the warnings about both, as :func:`load_session` names them."""
    warnings: list[str] = []
    seen: set[Path] = set()
    files: list[Path] = []
    for f in expand_paths(paths):
        r = f.resolve()
        if r in seen:
            warnings.append(f"{f}: given more than once; loaded once")
            continue
        seen.add(r)
        files.append(f)
    names, name_warnings = _unique_names(files)
    return files, names, warnings + name_warnings


def stem_names(paths: Sequence[Path | str]) -> list[str]:
    """The stem names :func:`load_session` gives the stems at ``paths``, without reading any audio.

    Raises
    ------
    AudioFileError
        As :func:`expand_paths`.
    """
    return _stem_files(paths)[1]


def _apply_roles(roles: Mapping[str, str], names: Sequence[str], paths: Sequence[Path],
                 guessed: list[str]) -> list[str]:
    """Overlay user-given roles (key: stem name, file name or path) on guesses."""
    out = list(guessed)
    resolved = [p.resolve() for p in paths]
    for key, role in roles.items():
        key_s = str(key)
        hits = [i for i, (n, p) in enumerate(zip(names, paths))
                if key_s in (n, p.name, str(p))]
        if not hits:
            kp = Path(key_s).resolve()
            hits = [i for i, r in enumerate(resolved) if r == kp]
        if not hits:
            raise ParameterError(
                f"--role: no stem named '{key_s}'; stems are {', '.join(names)}")
        if len(hits) > 1:
            raise ParameterError(
                f"--role: '{key_s}' matches several stems ({', '.join(names[i] for i in hits)}); "
                "use the stem name")
        role_n = re.sub(r"[\s-]+", "_", str(role).strip().lower())  # "Backing Vocal", "backing-vocal"
        if role_n not in ROLES:
            raise ParameterError(
                f"--role: unknown role '{role}' for '{key_s}'; choose from {', '.join(ROLES)}")
        out[hits[0]] = role_n
    return out


def _session_rate(rates: Sequence[int]) -> int:
    """Most common rate; ties go to the highest."""
    counts = Counter(rates)
    return max(counts, key=lambda r: (counts[r], r))


HOLD_AUDIO_FRACTION = 0.4
"""A session is held in memory when its float32 audio takes at most this share of the memory
available when it is loaded, and at most :data:`HOLD_AUDIO_MAX_BYTES` (the rest is left for the
analysis, the search and the exact renders); beyond that it streams from its files."""

HOLD_AUDIO_MAX_BYTES = 2 << 30
"""Largest session audio held in memory whatever the machine: 2 GiB of float32 is 30 stereo stems
of 4 minutes at 48 kHz, so a whole run stays within about 3.5 GB; longer sessions stream."""

FALLBACK_AVAILABLE_BYTES = 4 << 30
"""Memory assumed available where the system does not say (no ``/proc/meminfo``)."""


def available_memory_bytes() -> int:
    """Memory available to new allocations now (Linux ``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_AVAILABLE_BYTES


def hold_audio_budget_bytes() -> int:
    """Largest session audio (float32 bytes) :func:`load_session` holds in memory by default."""
    return int(min(HOLD_AUDIO_FRACTION * available_memory_bytes(), HOLD_AUDIO_MAX_BYTES))


DECODE_THREADS = 4  # files decoded at once by load_session (at most the cores this process may use)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_session(paths: Sequence[Path | str], *, roles: Mapping[str, str] | None = None,
                 sr: int | None = None, keep_audio: bool | None = None,
                 progress: Callable[[int, int, Path | None], None] | None = None) -> Session:
    """Load stems from files and/or folders into a :class:`Session`.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Audio files and/or folders (see :func:`expand_paths`).  A file given
        twice (same resolved path) is loaded once, with a warning.
    roles : mapping of str to str, optional
        Role overrides.  Keys may be a stem name (``"Kick In"``, or a
        disambiguated ``"kick-2"``), a file name (``"Kick In.wav"``) or a path
        as typed; values are one of :data:`ROLES` (case-insensitive; ``-`` or a
        space for ``_``: ``"backing-vocal"``).  Stems not named keep their
        guessed role (:func:`guess_role`).
    sr : int, optional
        Session sample rate in Hz (8000-384000).  Default: the most common
        rate among the files, ties going to the highest.
    keep_audio : bool, optional
        Hold every stem in memory (``Session.audio``).  Default: only if its
        float32 audio takes at most :func:`hold_audio_budget_bytes` (a share
        :data:`HOLD_AUDIO_FRACTION` of the memory available now, at most
        :data:`HOLD_AUDIO_MAX_BYTES`); otherwise
        every file is still read and checked now, but stems are read again when
        needed (:meth:`Session.stem`), so memory stays bounded for long sessions.
        Either way each file is decoded once here, as float32, up to :data:`DECODE_THREADS`
        files at once (in order: the results, warnings and errors are those of one file after
        the other).
    progress : callable(done, total, path), optional
        Called before each file is read (``path``) and once at the end (``None``).

    Returns
    -------
    Session
        ``audio`` of shape ``(stems, 2, samples)``, float32; every stem
        resampled to the session rate and zero-padded at the end to the
        longest stem.

    Raises
    ------
    AudioFileError
        Any error from :func:`expand_paths` / :func:`read_audio`, or every
        stem is silent.
    ParameterError
        No paths given, bad ``sr``, unknown stem or role in ``roles``.

    Notes
    -----
    Warnings (one line each, in ``Session.warnings``): a file resampled
    (``"<file>: resampled 48000 Hz -> 44100 Hz"``), a stem shorter than
    0.5 s among longer ones, a silent stem (peak < 1e-6, kept), a renamed
    duplicate stem name, a file given twice, a lossy source (MP3, Ogg Vorbis,
    Opus, ADPCM, ...: :data:`LOSSY_SUBTYPES`; ``"<file>: lossy (MP3) source; ..."``).
    """
    if sr is not None:
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not MIN_SR <= sr <= MAX_SR:
            raise ParameterError(
                f"--sr: must be a whole number of Hz between {MIN_SR} and {MAX_SR}, got {sr!r}")
        sr = int(sr)
    files, names, warnings = _stem_files(paths)
    if not files:
        raise ParameterError("no stems given; pass audio files or a folder of stems")

    rates, frames, channels = [], [], []
    for f in files:  # headers first (no samples read): the session's rate and length
        try:
            info = sf.info(str(f))
            rates.append(int(info.samplerate))
            frames.append(int(info.frames))
            channels.append(int(info.channels))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
            read_audio(f)  # raises the one-line error for this file
            raise AudioFileError(f"{f}: not a readable audio file") from None
        if info.subtype in LOSSY_SUBTYPES:
            warnings.append(f"{f}: lossy ({LOSSY_SUBTYPES[info.subtype]}) source; its coding artefacts are part "
                            f"of every mix (a WAV or FLAC original avoids them)")
    target = sr if sr is not None else _session_rate(rates)
    # length after resampling: resample_poly gives ceil(frames * up / down) samples
    lengths_est = [-(-m * target // r) if r != target else m for m, r in zip(frames, rates)]
    n_est = max(lengths_est)
    keep = (len(files) * 2 * n_est * 4 <= hold_audio_budget_bytes()) if keep_audio is None else bool(keep_audio)

    audio = np.zeros((len(files), 2, n_est), dtype=np.float32) if keep else None
    lengths, peaks = [], []
    is_mono = np.zeros(len(files), dtype=bool)
    def decode(k):  # one file, as float32 at the session rate (the decoders and resample_poly release the GIL)
        f = files[k]
        # a 16/24-bit PCM WAV at the session rate goes straight into its place (read_audio's compiled decoder)
        into = audio[k] if audio is not None and rates[k] == target else None
        x, rate = read_audio(f, dtype="float32", into=into)
        if x is into:  # the header's frames and channels (the decoder checked them); the peak without a temporary
            m = min(frames[k], n_est)
            return None, rate, float(max(into[:, :m].max(), -into[:, :m].min()))
        if rate != target:
            from scipy.signal import resample_poly  # here, not at import: scipy.signal takes ~0.9 s to import
            g = gcd(target, rate)
            x = resample_poly(x, target // g, rate // g, axis=1).astype(np.float32, copy=False)
        return x, rate, None

    workers = max(1, min(len(files), DECODE_THREADS, _cores()))
    with ThreadPoolExecutor(workers, thread_name_prefix="evomix-decode") as pool:
        ahead = {k: pool.submit(decode, k) for k in range(workers)}  # at most `workers` files in flight
        for i, f in enumerate(files):  # each file decoded once, as float32, into its place, in order
            if progress is not None:
                progress(i, len(files), f)
            x, rate, peak = ahead.pop(i).result()
            if i + workers < len(files):
                ahead[i + workers] = pool.submit(decode, i + workers)
            if rate != target:
                warnings.append(f"{f}: resampled {rate} Hz -> {target} Hz")
            if x is None:  # decoded into audio[i]: its header's channels and frames (checked by the decoder)
                is_mono[i] = channels[i] == 1
                lengths.append(min(frames[i], n_est))
                peaks.append(peak)
                continue
            is_mono[i] = x.shape[0] == 1
            m = min(x.shape[1], n_est)  # a header may promise a frame more or less than decoded
            lengths.append(m)
            peaks.append(float(np.max(np.abs(x))) if peak is None else peak)
            if audio is not None:
                audio[i, :, :m] = x[:, :m]  # broadcasts a mono (1, m) row into both channels
            del x
    if progress is not None:
        progress(len(files), len(files), None)

    n = max(lengths)
    if audio is not None and n < n_est:
        audio = np.ascontiguousarray(audio[:, :, :n])
    silent: list[str] = []
    for i, f in enumerate(files):
        m = lengths[i]
        if m < n and m / target < SHORT_STEM_S:
            warnings.append(
                f"{f}: only {m / target:.2f} s long; padded with silence to {n / target:.2f} s")
        if peaks[i] < SILENCE_PEAK:
            silent.append(names[i])
    if len(silent) == len(files):
        raise AudioFileError(f"all stems are silent: {', '.join(f.name for f in files)}")
    for i, name in enumerate(names):
        if name in silent:
            warnings.append(f"{files[i]}: silent (peak below -120 dBFS); kept but contributes nothing")

    guessed = [guess_role(f.name) for f in files]
    final_roles = _apply_roles(roles, names, files, guessed) if roles else guessed

    if audio is not None:
        audio.flags.writeable = False
    is_mono.flags.writeable = False
    return Session(sr=target, names=tuple(names), roles=tuple(final_roles), audio=audio,
                   is_mono=is_mono, paths=tuple(files), warnings=tuple(warnings),
                   silent=tuple(silent), length=n)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def write_audio(path: Path | str, audio: np.ndarray, sr: int, *, subtype: str = "PCM_24") -> Path:
    """Write audio atomically (temporary file + rename).

    Parameters
    ----------
    path : str or pathlib.Path
        Destination; the format comes from the suffix: ``.wav`` (WAV),
        ``.flac`` (FLAC), ``.aif``/``.aiff`` (AIFF).  The folder must exist.
    audio : numpy.ndarray
        Shape ``(channels, samples)`` with 1 or 2 channels, linear full scale,
        every sample finite and ``|x| <= 1``.
    sr : int
        Sample rate in Hz.
    subtype : str, default "PCM_24"
        libsndfile subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ...);
        must be valid for the format.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        Unsupported suffix, bad shape, bad ``sr`` or ``subtype``, NaN/inf
        samples, or peak above 1.0 (nothing is clipped silently: the master
        chain owns the ceiling).
    AudioFileError
        The file cannot be written; the temporary file is removed and an
        existing ``path`` is left untouched.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = OUTPUT_FORMATS.get(suffix)
    if fmt is None:
        raise ParameterError(
            f"{path}: unsupported output format '{path.suffix}'; use .wav, .flac or .aiff")
    x = np.asarray(audio)
    if x.ndim != 2 or x.shape[0] not in (1, 2) or x.shape[1] == 0:
        raise ParameterError(
            f"{path}: audio must have shape (channels, samples) with 1 or 2 channels "
            f"and at least one sample, got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(f"{path}: audio must be floating point, got {x.dtype}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"{path}: sample rate must be a positive whole number of Hz, got {sr!r}")
    if not isinstance(subtype, str) or not sf.check_format(fmt, subtype.upper()):
        raise ParameterError(
            f"{path}: subtype {subtype!r} is not valid for {fmt}; "
            f"choose from {', '.join(sf.available_subtypes(fmt))}")
    if not np.isfinite(x).all():
        raise ParameterError(f"{path}: audio contains NaN or infinite samples; refusing to write")
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:
        raise ParameterError(
            f"{path}: peak {peak:.6f} exceeds full scale 1.0; refusing to clip "
            "(apply the master ceiling first)")

    with atomic_file(path) as tmp:
        sf.write(tmp, np.ascontiguousarray(x.T), int(sr), subtype=subtype.upper(), format=fmt)
    return path
