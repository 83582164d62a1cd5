"""The result of a run and its file formats: :class:`Member`, :class:`MixResult` (``front.json``,
``alt-NN.json``, the files a run writes), and reading a saved params file back."""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from evomix import __version__
from evomix.choose.describe import UNITS as DESCRIPTOR_UNITS
from evomix.choose.describe import distinct_rule
from evomix.core.runtime import available_cores
from evomix.engine.render import ExactRender
from evomix.errors import AudioFileError, EvomixError, OptionError, ParameterError
from evomix.io.audio import MAX_SR, MIN_SR, Session, write_audio
from evomix.io.files import json_text, write_bytes_atomic, write_text_atomic
from evomix.io.places import check_output_folder
from evomix.io.spill import materialise
from evomix.output import export
from evomix.output.report import write_mix_report
from evomix.progress import NULL_REPORTER, ProgressReporter
from evomix.search import checkpoint as checkpoints
from evomix.search.algorithm import SearchResult
from evomix.search.genome import Params, params_stem_names, saved_number, shown
from evomix.settings import Master, SettingError
from objectives import REGISTRY, Target

FRONT_FORMAT = "evomix-front/1"


PARAMS_FORMAT = "evomix-params/1"


@dataclass
class Member:
    """One mix of the front: its genome, parameters and scores (lower is better)."""

    genome: np.ndarray
    params: dict
    objectives: dict
    exact: dict | None = None
    render: ExactRender | None = None
    measured: dict | None = None  # exported members: integrated_lufs, loudness_range_lu, true_peak_dbtp, descriptors
    fast_descriptors: dict | None = None  # listener descriptors in the fast tier (evomix.choose.describe)
    labels: list = field(default_factory=list)  # exported members: relative to the others (select.label_alternatives)
    audio: dict | None = None  # exported members: their alt-NN.wav as written, audio_record(): what rank reuses
    copy_of: int | None = None  # a space copy (evomix.choose.space): the index of the front member it copies


def audio_record(path: str | Path) -> dict:
    """``{"frames": n, "sha256": hex}`` of an exported master file: saved in ``front.json`` with its
    member, so that ``evomix rank`` can reuse the file only when it is intact and the one written."""
    return {"frames": int(sf.info(str(path)).frames), "sha256": checkpoints.file_sha256(path)}


def params_file_dict(m: Member, name: str, *, sr: int, genre: str, target: Target, constraints) -> dict:
    """The ``alt-NN.json`` content of the exported member ``m`` named ``name`` (``"alt-01"``)."""
    return {
        "format": PARAMS_FORMAT,
        "evomix_version": __version__,
        "name": name,
        "sr": sr,
        "genre": genre,
        "target_lufs": target.target_lufs,
        "ceiling_dbtp": target.ceiling_dbtp,
        "objectives": m.objectives,
        "exact": m.exact,
        "labels": list(m.labels),
        "descriptors": (m.measured or {}).get("descriptors"),
        "constraints": constraints,  # the run's locks and ranges: `evomix vary` keeps them
        "params": m.params,
    }


@dataclass
class MixResult:
    """The outcome of :func:`mix`.

    front : all non-dominated members (fast-tier scores).
    alternatives : the K exported members, rendered exactly (``render`` and ``exact`` set).
    """

    session: Session
    target: Target
    genre: str
    names: tuple
    weights: dict
    front: list
    alternatives: list
    search: SearchResult
    settings: dict
    warnings: list = field(default_factory=list)
    reference: dict | None = None
    call: dict | None = None  # the mix() call's arguments, for run.json
    before: tuple | None = None  # (ExactRender with a float32 master, report summary) of the equal-gain sum
    before_from: Path | None = None  # or a folder whose before.wav and report-data.json it may reuse (rank)
    checkpoint: Path | None = None  # the run's checkpoint file (evomix.search.checkpoint), if it made one
    checkpoint_bytes: bytes | None = None  # an interrupted run's checkpoint, for write() (no checkpoint= given)

    def front_dict(self) -> dict:
        """The documented ``front.json`` content."""
        alt_of = {id(m): i + 1 for i, m in enumerate(self.alternatives)}
        members = []
        for m in self.front:
            if m.copy_of is not None and m.exact is None:
                continue  # a space copy the choice did not render: not part of the front
            d = {"objectives": m.objectives}
            if m.copy_of is not None:
                d["space_copy_of"] = m.copy_of  # a front member's index: copies follow every member
            if m.exact is not None:
                d["exact"] = m.exact
            if id(m) in alt_of:
                d["alternative"] = f"alt-{alt_of[id(m)]:02d}"
                d["labels"] = list(m.labels)
                if m.audio is not None:
                    d["audio"] = m.audio
            if m.measured is not None and "descriptors" in m.measured:
                d["descriptors"] = m.measured["descriptors"]
                d["measured"] = {k: v for k, v in m.measured.items() if k != "descriptors"}
            if m.fast_descriptors is not None:
                d["descriptors_fast"] = m.fast_descriptors
            d["genome"] = [round(float(v), 9) for v in m.genome]
            d["params"] = m.params
            members.append(d)
        return {
            "format": FRONT_FORMAT,
            "evomix_version": __version__,
            "objectives": list(self.names),
            "units": {n: REGISTRY[n].unit for n in self.names},
            "weights": self.weights,
            "genre": self.genre,
            "profile": self.target.profile.to_dict(),
            "target_lufs": self.target.target_lufs,
            "ceiling_dbtp": self.target.ceiling_dbtp,
            "sr": self.session.sr,
            "descriptor_units": dict(DESCRIPTOR_UNITS),
            "distinct": distinct_rule(),
            "stems": {n: {"file": str(p), "role": r}
                      for n, p, r in zip(self.session.names, self.session.paths, self.session.roles)},
            "settings": self.settings,
            "reference": self.reference,
            "search": search_report(self.search),
            "members": members,
        }

    def alternative_dict(self, i: int) -> dict:
        """The ``alt-NN.json`` content of alternative ``i`` (0-based; NN is ``i + 1``)."""
        return params_file_dict(self.alternatives[i], f"alt-{i + 1:02d}", sr=self.session.sr, genre=self.genre,
                                target=self.target, constraints=self.settings.get("constraints"))

    def write(self, out: str | Path, *, force: bool = False, reporter: ProgressReporter | None = None,
              export_stems: bool = False, pre_stems: bool = False, daw: Sequence[str] | str = (),
              command: Sequence[str] | None = None) -> list[Path]:
        """Write ``alt-NN.wav`` (24-bit), ``alt-NN.json`` and ``front.json`` into ``out``, the stem and
        DAW exports asked for, then the listening report (``before.wav``, ``report-data.json``,
        ``run.json``, ``report.html``, :func:`evomix.output.report.write_mix_report`; ``command`` is the
        command line for ``run.json``).

        Every file is complete before it appears (written to a temporary name, then renamed).
        Refuses a non-empty folder unless ``force``; never writes over an input stem.
        ``reporter`` (:mod:`evomix.progress`) gets a "write" phase, one unit per file.
        ``export_stems``: also ``alt-NN-stems/`` (each stem as it sounds in the mix, float WAV,
        summing to the master); ``pre_stems``: ``alt-NN-stems-pre/`` (before the master chain);
        ``daw``: DAW sessions, "dawproject" and/or "reaper" (imply ``export_stems``); see
        :mod:`evomix.output.export`. An interrupted search without ``checkpoint=`` also leaves
        ``checkpoint.npz`` (``evomix.search.checkpoint``) to resume from.
        """
        daw = export.parse_daw(daw)
        out = Path(out)
        check_output_folder(out, force=force, inputs=self.session.paths,
                            ignore=[self.checkpoint] if self.checkpoint else ())
        created = not out.exists()
        before = set() if created else set(out.iterdir())
        try:
            out.mkdir(parents=True, exist_ok=True)
            return self._write_into(out, reporter=reporter, export_stems=export_stems, pre_stems=pre_stems, daw=daw,
                                    command=command)
        except (EvomixError, OSError) as e:  # a full disk, a folder removed meanwhile: no half-written result
            if created:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for p in set(out.iterdir()) - before:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
            if isinstance(e, EvomixError):
                raise
            raise AudioFileError(f"{out}: cannot write ({e.strerror or e}); nothing was left there") from e

    def _write_into(self, out: Path, *, reporter, export_stems: bool, pre_stems: bool, daw, command) -> list[Path]:
        """:meth:`write` into the existing folder ``out``, its options checked."""
        written = []
        reporter = NULL_REPORTER if reporter is None else reporter
        per_alt = 2 + self.session.n_stems * (int(export_stems or bool(daw)) + int(pre_stems)) + len(daw)
        def master_wav(i: int, m) -> Path:
            return write_audio(out / f"alt-{i + 1:02d}.wav", materialise(m.render.mix), self.session.sr,
                               subtype="PCM_24")

        with reporter.phase("write", total=per_alt * len(self.alternatives) + 1, unit="files") as ph, \
                ThreadPoolExecutor(max(1, min(2, available_cores())), thread_name_prefix="evomix-write") as pool:
            wavs = [pool.submit(master_wav, i, m) for i, m in enumerate(self.alternatives)]  # libsndfile: off the GIL
            for i, m in enumerate(self.alternatives):
                name = f"alt-{i + 1:02d}"
                written.append(wavs[i].result())
                m.audio = audio_record(written[-1])
                ph.advance()
                written.append(write_text_atomic(out / f"{name}.json", json.dumps(self.alternative_dict(i), indent=1)))
                ph.advance()
                written += export.export_alternative(
                    self.session, m.params, name, out, target_lufs=self.target.target_lufs,
                    ceiling_dbtp=self.target.ceiling_dbtp, genre=self.genre, stems=export_stems, pre_stems=pre_stems,
                    daw=daw, threads=available_cores(), phase=ph, render=m.render)
            written.append(write_text_atomic(out / "front.json", json_text(self.front_dict(), "members")))
            ph.advance()
        if self.checkpoint_bytes is not None:
            written.append(write_bytes_atomic(out / checkpoints.DEFAULT_NAME, self.checkpoint_bytes))
        written += write_mix_report(self, out, reporter=reporter, command=command)
        return written


def search_report(result: SearchResult | None) -> dict | None:
    """The search part of ``front.json``: algorithm, why it stopped, hypervolume per generation and
    how it is normalised (:mod:`evomix.search.hypervolume`). No wall times: the same seed gives the same file.
    None for a front that was not searched here (``evomix rank``: see its ``ranked_from`` run)."""
    if result is None:
        return None
    return {"algorithm": result.algorithm, "stop_reason": result.stop_reason, "generations": int(result.generations),
            "evaluations": int(result.evaluations),
            "hypervolume": [round(float(h), 6) for h in result.hypervolume],
            "hypervolume_space": None if result.normaliser is None else result.normaliser.to_dict()}


def load_params_file(path: str | Path) -> dict:
    """Read an ``alt-NN.json`` (or a bare params object)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ParameterError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParameterError(f"{path}: not a readable JSON params file ({e})") from None
    if not isinstance(d, dict):
        raise ParameterError(f"{path}: expected a JSON object")
    return d


def saved_master(d: dict, source: str, *, target_lufs: float | None = None, ceiling_dbtp: float | None = None,
                 **kw) -> Master:
    """The :class:`~evomix.settings.Master` of a saved mix ``d`` (read from ``source``): its
    ``target_lufs`` and ``ceiling_dbtp`` (the defaults for a file without them) unless given here;
    ``kw`` (``max_limiting_db``) as given.

    Raises
    ------
    ParameterError
        A saved value that is not a number, or out of its range, naming ``source`` (and the flag
        that overrides it); a bad value given here, naming that keyword (flag).
    """
    default = Master()
    given = {"target_lufs": target_lufs, "ceiling_dbtp": ceiling_dbtp}
    units = {"target_lufs": "LUFS", "ceiling_dbtp": "dBTP"}
    values = {k: saved_number(d, k, source, getattr(default, k), unit=units[k]) if v is None else v
              for k, v in given.items()}
    try:
        return Master(**values, **kw)
    except SettingError as e:
        if e.field in given and given[e.field] is None:  # the value came from the file
            field, detail = e.field, e.detail
            raise OptionError(lambda k: f"{source}: {field} {detail} (pass {k(field)} to override it)") from None
        raise


def saved_rate(d: dict, source: str) -> int | None:
    """The sample rate ``sr`` a saved mix ``d`` (read from ``source``) was made at (None: not saved).

    Raises
    ------
    ParameterError
        Not a whole number of Hz in [8000, 384000], naming ``source``.
    """
    sr = saved_number(d, "sr", source, None, unit="Hz", integer=True)
    if sr is not None and not MIN_SR <= sr <= MAX_SR:
        raise ParameterError(f"{source}: sr must be between {MIN_SR} and {MAX_SR} Hz, got {shown(d['sr'])}")
    return sr


def saved_params(d: dict, source: str) -> tuple[dict, list[str]]:
    """The ``params`` object of a saved mix ``d`` (read from ``source``; a bare params object is its
    own) and its stem names, every value checked (type and range) before any audio is read.

    Raises
    ------
    ParameterError
        As :meth:`evomix.search.genome.Params.from_dict`, naming ``source``.
    """
    p = d.get("params", d)
    names = params_stem_names(p, source)
    Params.from_dict(p, names, source=source)
    return p, names
