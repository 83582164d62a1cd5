"""The ``evomix`` command line: thin typer commands over ``evomix.api``.

Results go to stdout (``--json`` for machines); progress, warnings and errors go to stderr.
Every expected failure is one line ``evomix: error: ...`` and exit code 1 (2 for usage errors).
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shlex
import shutil
import sys
from enum import Enum
from pathlib import Path

import typer

try:  # typer >= 0.20 vendors click under typer._click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, UsageError

    NoArgsIsHelpError = ()
from typing import Annotated

from rich.console import Console
from rich.table import Table

from evomix import api
from evomix.demo import write_demo_stems
from evomix.errors import EvomixError, ParameterError
from evomix.io.audio import expand_paths
from evomix.io.places import check_creatable, check_output_file, check_output_folder
from evomix.output import report as report_mod
from evomix.output.export import parse_daw
from evomix.output.result import MixResult
from evomix.pipeline import REFERENCE_MODES
from evomix.progress import Reporter
from evomix.search import checkpoint as checkpoints
from evomix.search.algorithm import ALGORITHMS
from evomix.search.constraints import Constraints
from evomix.search.parallel import check_options as check_parallel_options
from evomix.settings import BACKENDS, PICKS, Master, Parallel, Search, SettingError
from evomix.tools.explore import DEFAULT_TIME_LIMIT_S, parse_descriptors
from evomix.tools.explore import explore as explore_map
from evomix.tools.profile import check_profile_output, learn_profile, write_profile
from evomix.tools.rank import Written, ranking_table
from evomix.tools.rank import export as export_ranked
from evomix.tools.rank import plan as plan_ranking
from evomix.tools.vary import vary as vary_mixes
from objectives import builtin_genres, load_profile

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Mix and master multitrack stems by multi-objective genetic search.",
)
def _choices(name: str, values) -> type[Enum]:
    """A ``str`` Enum of the allowed values, so typer lists them and refuses others (exit 2)."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


Algorithm = _choices("Algorithm", ALGORITHMS)
Backend = _choices("Backend", BACKENDS)
ReferenceMode = _choices("ReferenceMode", REFERENCE_MODES)
Pick = _choices("Pick", PICKS)
DEFAULT_SEARCH, DEFAULT_PARALLEL, DEFAULT_MASTER = Search(), Parallel(), Master()  # the flags' defaults: one definition
DEFAULT_ALGORITHM, DEFAULT_BACKEND = Algorithm(DEFAULT_SEARCH.algorithm), Backend(DEFAULT_PARALLEL.backend)
out_console = Console()
err_console = Console(stderr=True, highlight=False)


def _fail(e: Exception) -> None:
    """Print ``e`` as one line (naming the flag where the error names a Python keyword) and exit 1."""
    if hasattr(e, "for_cli"):  # errors.OptionError, settings.SettingError, checkpoint.CheckpointError
        e = e.for_cli()
    err_console.print(f"evomix: error: {e}", markup=False, soft_wrap=True)
    raise typer.Exit(code=1)


def one_line_errors(command):
    """Decorate a command so that an expected failure (:class:`~evomix.errors.EvomixError`) is one
    line on stderr naming the flag, and exit code 1 (:func:`_fail`): no traceback."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EvomixError as e:
            _fail(e)

    return run


def _parse_roles(items: list[str] | None) -> dict:
    roles = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--role: expected FILE=ROLE, got '{item}'")
        k, _, v = item.partition("=")
        roles[k.strip()] = v.strip()
    return roles


def _constraints(locks: list[str] | None, ranges: list[str] | None, keys: list[str] | None = None) -> Constraints:
    """``--lock`` / ``--range`` (and ``--key``) entries, parsed and checked before any file is read."""
    parsed = Constraints.parse(locks, ranges, lock_option="--lock", range_option="--range")
    return parsed.with_keys(keys) if keys else parsed


def _settings(*, algorithm, population, generations, time_limit, seed, alternatives, jobs, threads, backend,
              scheduler, target_lufs, ceiling_dbtp, max_limiting_db) -> tuple[Search, Parallel, Master]:
    """The (Search, Parallel, Master) settings of ``evomix.settings``, made once from the flags;
    a bad value is reported with its flag (``--population must be >= 4``)."""
    check_parallel_options(jobs, backend, scheduler, threads)
    try:
        return (Search(algorithm=algorithm, population=population, generations=generations, time_limit=time_limit,
                       seed=seed, alternatives=alternatives),
                Parallel(jobs=jobs, threads=threads, backend=backend, scheduler=scheduler),
                Master(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, max_limiting_db=max_limiting_db))
    except SettingError as e:
        raise e.for_cli() from None


def _reporter(quiet: bool) -> Reporter:
    """Progress on stderr: rich bars on a terminal, plain lines otherwise, nothing with --quiet."""
    return Reporter.auto(quiet=quiet, console=err_console)


def _summary(result: MixResult, out: Path, reporter: Reporter) -> dict:
    alts = []
    for i, m in enumerate(result.alternatives):
        meas = m.measured  # BS.1770-4 loudness and 4x true peak of the exported master
        alts.append({
            "file": str(out / f"alt-{i + 1:02d}.wav"),
            "params": str(out / f"alt-{i + 1:02d}.json"),
            "objectives": m.objectives,
            "exact": m.exact,
            "integrated_lufs": meas["integrated_lufs"],
            "true_peak_dbtp": meas["true_peak_dbtp"],
            "labels": list(m.labels),
            "descriptors": meas.get("descriptors"),
        })
    searched = {} if result.search is None else {  # rank and vary re-use a front: no search of their own
        "algorithm": result.settings["algorithm"],
        "generations": result.settings["generations"],
        "stop_reason": result.settings["stop_reason"],  # converged, time limit, generations or interrupted
        "hypervolume": result.settings["hypervolume"],
        "search_s": round(float(result.search.elapsed_s), 3),
    }
    return searched | {
        "out": str(out),
        "front": str(out / "front.json"),
        "front_size": len(result.front),
        "evaluations": result.settings["evaluations"],
        "replaced_alternatives": result.settings["replaced_alternatives"],
        "exact_renders": result.settings["exact_renders"],
        "genre": result.genre,
        "objectives": list(result.names),
        "silent_stems": list(result.session.silent),
        "warnings": list(result.warnings),
        "reference": result.reference,
        "constraints": result.settings.get("constraints"),  # the --lock / --range of the run
        "alternatives": alts,
        "timings_s": reporter.timings_s,  # wall time per phase, and total since the command started
    }


#: listener descriptors in the summary table (evomix.choose.describe): key, column, format
SUMMARY_DESCRIPTORS = (("centroid_hz", "centroid Hz", "{:.0f}"), ("side_mid_db", "S/M dB", "{:.1f}"),
                       ("vocal_lu", "vocal LU", "{:+.1f}"), ("low_end_db", "<120Hz dB", "{:.1f}"),
                       ("punch_db", "punch dB", "{:.1f}"), ("plr_db", "PLR dB", "{:.1f}"), ("lra_lu", "LRA", "{:.1f}"))


def _print_sounds(alternatives: list) -> None:
    """A second table: how each alternative sounds (exact listener descriptors and labels)."""
    shown = [(k, h, f) for k, h, f in SUMMARY_DESCRIPTORS
             if any((a.get("descriptors") or {}).get(k) is not None for a in alternatives)]
    if not shown:
        return
    t = Table(title="how they sound, relative to each other")
    t.add_column("file", no_wrap=True, min_width=10)
    for _, h, _ in shown:
        t.add_column(h, justify="right")
    t.add_column("labels")
    for a in alternatives:
        d = a.get("descriptors") or {}
        t.add_row(Path(a["file"]).name, *[("-" if d.get(k) is None else f.format(d[k])) for k, _, f in shown],
                  ", ".join(a.get("labels") or []) or "-")
    out_console.print(t)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        out_console.print_json(json.dumps(summary))
        return
    t = Table(title=f"{len(summary['alternatives'])} alternatives in {summary['out']} "
                    f"(front of {summary['front_size']}, {summary['evaluations']} candidates evaluated)")
    t.add_column("file", no_wrap=True, min_width=10)
    for n in summary["objectives"]:
        t.add_column(n, justify="right")
    t.add_column("LUFS", justify="right")
    t.add_column("dBTP", justify="right")
    for a in summary["alternatives"]:
        t.add_row(Path(a["file"]).name, *[f"{a['exact'][n]:.2f}" for n in summary["objectives"]],
                  f"{a['integrated_lufs']:.1f}", f"{a['true_peak_dbtp']:.2f}")
    out_console.print(t)
    if "stop_reason" in summary:
        out_console.print(f"search: {summary['algorithm']} stopped after {summary['generations']} generations "
                          f"({summary['stop_reason']}, {summary['search_s']:.1f} s), "
                          f"hypervolume {summary['hypervolume']:.4f}",
                          markup=False)
    _print_sounds(summary["alternatives"])
    out_console.print(f"front: {summary['front']}")


def _run_mix(paths, out, *, search: Search, parallel: Parallel, master: Master, genre="pop", weights=None,
             roles=None, force=False, quiet=False, as_json=False, reference=None, reference_mode="auto",
             reporter=None, constraints=None, export_stems=False, pre_stems=False, daw=None, open_report=False,
             checkpoint=None, resume=None):
    """``evomix mix`` (and ``evomix demo``) once the flags are parsed into settings objects: search,
    export and the summary."""
    reporter = _reporter(quiet) if reporter is None else reporter
    # the run's own checkpoint may be in the folder already
    check_output_folder(out, force=force, ignore=[checkpoint] if checkpoint is not None else ())
    if checkpoint is not None:
        try:
            checkpoints.check_target(checkpoint, resume=resume, force=force)
        except checkpoints.CheckpointError as e:
            raise e.for_cli() from None
    daw = parse_daw(daw)  # before the search: an unknown format fails at once
    try:
        result = api.mix(paths, genre=genre, weights=weights, roles=_parse_roles(roles), reference=reference,
                         reference_mode=reference_mode, reporter=reporter, search=search, parallel=parallel,
                         master=master,
                         constraints=constraints, keep_master_gain=bool(export_stems or pre_stems or daw),
                         checkpoint=checkpoint, resume=resume)
    except checkpoints.CheckpointError as e:
        raise e.for_cli() from None
    if result.reference is not None and not as_json:
        ref = result.reference
        err_console.print(f"reference {ref['file']}: {ref['mode']} (fit correlation {ref['correlation']:.3f})",
                          markup=False)
        for key, label in (("fitted", "fitted from the reference"), ("closest_member", "front member closest to it")):
            if key in ref:
                txt = ", ".join(f"{n} {v['gain_db']:+.1f} dB pan {v['pan']:+.2f}" for n, v in ref[key].items())
                err_console.print(f"  {label}: {txt}", markup=False, soft_wrap=True)
    for w in result.warnings:
        err_console.print(f"evomix: warning: {w}", markup=False, soft_wrap=True)
    if result.session.silent:
        err_console.print(f"evomix: note: silent stem(s) kept: {', '.join(result.session.silent)}", markup=False)
    exported = result.write(out, force=force, reporter=reporter, export_stems=export_stems, pre_stems=pre_stems,
                            daw=daw,
                            command=list(sys.argv))
    if (export_stems or pre_stems or daw) and not (as_json or quiet):
        extra = [p for p in exported if p.is_dir() or p.suffix in (".dawproject", ".RPP")]
        err_console.print("exported: " + ", ".join(str(p) for p in extra), markup=False, soft_wrap=True)
    summary = _summary(result, out, reporter)
    summary["report"] = str(out / report_mod.REPORT_NAME)
    if result.settings.get("stop_reason") == "interrupted":
        saved = result.checkpoint if result.checkpoint is not None else out / checkpoints.DEFAULT_NAME
        summary["checkpoint"] = str(saved)
        summary["resume_command"] = resume_command(sys.argv, saved)
        err_console.print(f"evomix: interrupted after generation {result.settings['generations']}: exported the front "
                          f"found so far; continue with: {summary['resume_command']}", markup=False, soft_wrap=True)
    _print_summary(summary, as_json)
    if not as_json:
        out_console.print(f"report: {summary['report']}", markup=False, soft_wrap=True)
    if open_report:
        _open(Path(summary["report"]))
    return summary


def resume_command(argv: list[str], saved: Path) -> str:
    """The command line that continues an interrupted run as printed: the same arguments with
    ``--resume SAVED`` (replacing an earlier one) and ``--force`` (the folder holds the exported front)."""
    args, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a == "--resume":
            skip = True
        elif not a.startswith("--resume="):
            args.append(a)
    args += ["--resume", str(saved)] + ([] if "--force" in args else ["--force"])
    return shlex.join(["evomix", *args])


def _open(path: Path) -> None:
    """Open the report in the default browser; a warning (not an error) when none can be started."""
    if not report_mod.open_report(path):
        err_console.print(f"evomix: warning: no browser could be started; open {path} yourself", markup=False,
                          soft_wrap=True)


OutOpt = Annotated[Path, typer.Option("--out", "-o", help=(
        "Folder for alt-NN.wav/.json and front.json (created if missing)."
    ))]
GenreOpt = Annotated[str, typer.Option(help="Target genre (see 'evomix genres') or a profile JSON file.")]
TargetOpt = Annotated[float, typer.Option("--target-lufs", help=(
        "Integrated loudness of every exported master, LUFS (-40..-5)."
    ))]
CeilingOpt = Annotated[float, typer.Option(help="True-peak ceiling of every exported master, dBTP (-9..0).")]
MaxLimitingOpt = Annotated[float | None, typer.Option("--max-limiting", help=(
        "Most gain reduction the master's true-peak limiter may apply to reach the target, dB (0..40); mixes needing "
        "more"
        " are left out."
    ))]
PopOpt = Annotated[int, typer.Option(help="Candidates per generation (>= 4; rounded up to a multiple of 4).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (>= 0): the same seed gives the same front.")]
WeightsOpt = Annotated[str | None, typer.Option(help=(
        "Objective weights, e.g. 'masking=2,genre=0.5'; 0 switches one off."
    ))]
AltOpt = Annotated[int, typer.Option(help="Number of distinct mixes to export (>= 1).")]
ForceOpt = Annotated[bool, typer.Option("--force", help=(
        "Write into a non-empty output folder (replacing earlier results)."
    ))]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help=(
        "No progress on stderr (warnings and errors are still printed)."
    ))]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help=(
        "Local worker processes scoring each generation (>= 1); the front is identical for any N."
    ))]
BackendOpt = Annotated[Backend, typer.Option("--backend", help=(
        "Where candidates are scored: local (--jobs processes) or dask (an existing cluster, see --scheduler)."
    ))]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help=(
        "Threads scoring each generation on this machine, shared by --jobs (>= 1; default: every core)."
    ), show_default=False)]
GenerationsOpt = Annotated[int | None, typer.Option(help=(
        "Run exactly this many generations (>= 0); default: stop when the best mix found stops improving "
        "(converged), or at --time-limit."
    ), show_default=False)]
AlgorithmOpt = Annotated[Algorithm, typer.Option("--algorithm", help=(
        "Search algorithm: nsga2, nsga3 (reference points; higher hypervolume, weaker steering by --weights) or random "
        "(the same budget on random genomes)."
    ))]
TimeLimitOpt = Annotated[float, typer.Option("--time-limit", help=(
        "Wall-clock cap of the search, seconds (> 0); ignored with --generations."
    ))]
SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help=(
        "Address of a running dask scheduler for --backend dask, e.g. tcp://10.0.0.5:8786."
    ))]
LockOpt = Annotated[list[str] | None, typer.Option("--lock", metavar="STEM.PARAM=VALUE", help=(
        "Fix a parameter, STEM.PARAM=VALUE in its unit (repeatable), names as in alt-NN.json: vocal.gain_db=-3, "
        "bass.pan=0, master.comp.ratio=2, '*.eq.highpass_hz=30' for every stem."
    ), show_default=False)]
RangeOpt = Annotated[list[str] | None, typer.Option("--range", metavar="STEM.PARAM=LO:HI", help=(
        "Narrow a parameter, STEM.PARAM=LO:HI (repeatable): bass.pan=-0.2:0.2, '*.eq.highpass_hz=40:120'; STEM.PARAM "
        "beats *.PARAM."
    ), show_default=False)]
KeyOpt = Annotated[list[str] | None, typer.Option("--key", metavar="STEM=KEY", help=(
        "Which stem keys a stem's dynamic cut, STEM=KEY (repeatable): bass=kick, guitar=vocal; guitar=none for no cut. "
        "Default by role: the lead vocal keys guitars, keys, pads and synths; the kick keys the bass. Giving one opens "
        "the dynamic cuts (as naming an unmask_* parameter in --lock/--range does)."
    ), show_default=False)]
OpenOpt = Annotated[bool, typer.Option("--open", help="Open report.html in the default browser when done.")]
CheckpointOpt = Annotated[Path | None, typer.Option("--checkpoint", help=(
        "Save the search state to this file (.npz) after every generation, atomically; an existing file needs --force "
        "(or"
        " is the --resume file)."
    ), show_default=False)]
ResumeOpt = Annotated[Path | None, typer.Option("--resume", help=(
        "Continue the search saved in this checkpoint (same stems and search options; give a larger --generations or "
        "--time-limit to go further)."
    ), show_default=False)]


@app.command()
@one_line_errors
def mix(
    paths: Annotated[list[Path], typer.Argument(help=(
            "Stem files or folders (every format libsndfile decodes: WAV, FLAC, AIFF, OGG, MP3, ...)."
        ), show_default=False)],
    out: OutOpt,
    genre: GenreOpt = "pop",
    target_lufs: TargetOpt = DEFAULT_MASTER.target_lufs,
    ceiling: CeilingOpt = DEFAULT_MASTER.ceiling_dbtp,
    max_limiting: MaxLimitingOpt = DEFAULT_MASTER.max_limiting_db,
    population: PopOpt = DEFAULT_SEARCH.population,
    generations: GenerationsOpt = None,
    seed: SeedOpt = DEFAULT_SEARCH.seed,
    weights: WeightsOpt = None,
    algorithm: AlgorithmOpt = DEFAULT_ALGORITHM,
    time_limit: TimeLimitOpt = DEFAULT_SEARCH.time_limit,
    alternatives: AltOpt = DEFAULT_SEARCH.alternatives,
    role: Annotated[list[str] | None, typer.Option(help=(
            "Set a stem's role, FILE=ROLE (repeatable); roles: vocal (the lead vocal), backing_vocal, drums, kick, "
            "snare, toms, hihat, overheads, room, percussion, bass, guitar, keys, piano, synth, pad, lead, fx, other."
        ))] = None,
    profile: Annotated[Path | None, typer.Option(help=(
            "A profile JSON (from 'evomix profile'); overrides --genre."
        ))] = None,
    reference: Annotated[Path | None, typer.Option(help=(
            "A reference track: a rough mix of these stems (its balance is recovered and matched), or another song (its"
            " "
            "sound becomes the target profile)."
        ))] = None,
    reference_mode: Annotated[ReferenceMode, typer.Option(help=(
            "auto (detect whether the reference is a mix of these stems), same-song or style."
        ))] = ReferenceMode.auto,
    jobs: JobsOpt = DEFAULT_PARALLEL.jobs,
    threads: ThreadsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    scheduler: SchedulerOpt = None,
    lock: LockOpt = None,
    range_: RangeOpt = None,
    key: KeyOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    export_stems: Annotated[bool, typer.Option("--export-stems", help=(
            "Also write alt-NN-stems/: each stem as it sounds in that mix (float WAV; they sum to alt-NN.wav)."
        ))] = False,
    export_pre_stems: Annotated[bool, typer.Option("--export-pre-stems", help=(
            "Also write alt-NN-stems-pre/: each stem before the master chain (float WAV; they sum to the master bus "
            "input)."
        ))] = False,
    daw: Annotated[list[str] | None, typer.Option("--daw", help=(
            "DAW sessions per alternative: dawproject, reaper (comma list or repeated); implies --export-stems."
        ))] = None,
    open_report: OpenOpt = False,
    checkpoint: CheckpointOpt = None,
    resume: ResumeOpt = None,
):
    """Search for mixes of the stems and export a set of distinct finished alternatives.

    Ctrl-C during the search finishes the generation, saves the checkpoint and exports the front
    found so far (into --out, with checkpoint.npz there if no --checkpoint was given); a second
    Ctrl-C aborts without writing the outputs."""
    try:
        reporter = _reporter(quiet)  # made first: timings_s["total"] counts from here
        constraints = _constraints(lock, range_, key)
        search, parallel, master = _settings(
            algorithm=algorithm.value, population=population, generations=generations, time_limit=time_limit, seed=seed,
            alternatives=alternatives, jobs=jobs, threads=threads, backend=backend.value, scheduler=scheduler,
            target_lufs=target_lufs, ceiling_dbtp=ceiling, max_limiting_db=max_limiting)
        _run_mix(paths, out, search=search, parallel=parallel, master=master,
                 genre=str(profile) if profile is not None else genre, weights=weights, roles=role, force=force,
                 quiet=quiet, as_json=json_out, reference=reference, reference_mode=reference_mode.value,
                 reporter=reporter, constraints=constraints, export_stems=export_stems, pre_stems=export_pre_stems,
                 daw=daw, open_report=open_report, checkpoint=checkpoint, resume=resume)
    except KeyboardInterrupt:  # a second Ctrl-C in the search, or one outside it
        _aborted(checkpoint)


def _aborted(checkpoint: Path | None) -> None:
    """One line and exit code 130 (128 + SIGINT) for a Ctrl-C that the search did not take."""
    note = f"; the last generation saved is in {checkpoint}" if checkpoint is not None and checkpoint.is_file() else ""
    err_console.print(f"evomix: aborted by Ctrl-C{note}", markup=False, soft_wrap=True)
    raise typer.Exit(code=130)


def _json_line(stream, obj: dict) -> None:
    """One JSON object on one line of ``stream``, flushed (``evomix rank --json`` streams them)."""
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def _print_ranking(table: dict) -> None:
    """The new order of ``evomix rank`` (``evomix.tools.rank.ranking_table``), printed before any
    render: per alternative the run's file it reuses (or "render"), its scores (``~``: fast-tier
    estimate) and how it sounds relative to the others (labels; the descriptors are in --json)."""
    names, rows = table["objectives"], table["order"]
    weights = ", ".join(f"{n}={table['weights'][n]:g}" for n in names)
    t = Table(title=f"new order: {len(rows)} of the front's {table['front_size']} mixes ({weights})")
    t.add_column("file", no_wrap=True, min_width=10)
    t.add_column("source", no_wrap=True)
    for n in names:
        t.add_column(f"{n} {table['units'][n]}".strip(), justify="right")
    t.add_column("sounds")
    for r in rows:
        mark = "" if r["tier"] == "exact" else "~"
        t.add_row(f"{r['alternative']}.wav", f"run {r['from_run']}" if r["from_run"] else "render",
                  *[f"{mark}{r['scores'][n]:.2f}" for n in names], ", ".join(r["labels"]) or "-")
    out_console.print(t)
    notes = [f"{table['reused']} reused from the run (written at once), {table['to_render']} to render"]
    if table["to_render"]:
        notes.append("~: fast-tier estimate, replaced by the exact score when rendered; a mix whose render "
                     "misses it is replaced by the next choice")
    if table["dropped"]:
        notes.append(f"no longer exported: {', '.join(table['dropped'])}")
    for line in notes:
        out_console.print(line, markup=False, soft_wrap=True)
    sys.stdout.flush()


@app.command()
@one_line_errors
def rank(
    run: Annotated[Path, typer.Argument(help=(
            "A folder written by 'evomix mix' (its front.json keeps every member's genome)."
        ), show_default=False)],
    paths: Annotated[list[Path] | None, typer.Argument(help=(
            "The stems, if not at the paths saved in front.json."
        ), show_default=False)] = None,
    weights: WeightsOpt = None,
    alternatives: Annotated[int | None, typer.Option(help=(
            "Number of distinct mixes to export (>= 1; default: as the run)."
        ), show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help=(
            "Folder for the re-exported alternatives (default: the run's folder, replacing its alt-NN files and "
            "front.json)."
        ), show_default=False)] = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help=(
            "Machine-readable output on stdout, one JSON object a line: the new order ({\"ranking\": ...}) first, "
            "then one {\"written\": ...} per alternative as its files are complete, the summary last."
        ))] = False,
):
    """Re-rank a finished run's saved front with new weights and re-export its alternatives (no new search).

    The new order prints at once (from the scores saved in the run); each alternative is written as
    soon as it is final: the run's own renders are reused, the others rendered one after another.
    Ctrl-C keeps the alternatives already written."""
    reporter = _reporter(quiet)
    stdout = sys.stdout  # the JSON lines go here even while a progress bar redirects sys.stdout
    in_place = out is None or (out.exists() and out.resolve() == run.resolve())
    target = run if out is None else out
    if not in_place:
        check_output_folder(target, force=force)
    else:
        check_creatable(target, keyword="run")  # its alt-NN files are replaced there
    ranking = plan_ranking(run, paths or (), weights=weights, alternatives=alternatives, reporter=reporter)
    table = ranking_table(ranking)
    if json_out:
        _json_line(stdout, {"ranking": table})
    else:
        _print_ranking(table)

    done: list = []

    def written(w: Written) -> None:
        done.append(w.wav.name)
        source = f"the run's {w.from_run}" if w.from_run else "rendered"
        if json_out:
            _json_line(stdout, {"written": {"alternative": f"alt-{w.number:02d}", "file": str(w.wav),
                                            "from_run": w.from_run, "exact": w.member.exact, "renders": w.renders,
                                            "after_s": reporter.timings_s["total"]}})
        elif not quiet:
            err_console.print(f"evomix: {w.wav} ready ({source}; {w.renders} exact render(s) so far, "
                              f"{reporter.timings_s['total']:.1f} s)", markup=False, soft_wrap=True)

    try:
        result = export_ranked(ranking, target, in_place=in_place, reporter=reporter, on_written=written,
                               command=list(sys.argv))
    except KeyboardInterrupt:
        err_console.print(f"evomix: rank interrupted by Ctrl-C; kept the alternatives written, each complete: "
                          f"{', '.join(done) or 'none'} in {target} (front.json and the report: not rewritten)",
                          markup=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    for w in result.warnings:
        err_console.print(f"evomix: warning: {w}", markup=False, soft_wrap=True)
    summary = _summary(result, target, reporter)
    if json_out:
        _json_line(stdout, summary)
    else:
        _print_summary(summary, False)


@app.command()
@one_line_errors
def vary(
    files: Annotated[list[Path], typer.Argument(help=(
            "One or two saved mixes (alt-NN.json), then the stems (files or folders)."
        ), show_default=False)],
    out: OutOpt,
    spread: Annotated[float, typer.Option(help=(
            "How far from the input, in (0, 1]: Gaussian mutation of sigma spread/3 per gene (genome units)."
        ))] = 0.3,
    n: Annotated[int, typer.Option("-n", help="Variations to export (>= 1), closest first.")] = 8,
    seed: SeedOpt = DEFAULT_SEARCH.seed,
    genre: Annotated[str | None, typer.Option(help=(
            "Genre for the scores (default: the saved one)."
        ), show_default=False)] = None,
    weights: WeightsOpt = None,
    target_lufs: Annotated[float | None, typer.Option("--target-lufs", help=(
            "Override the saved loudness target, LUFS."
        ), show_default=False)] = None,
    ceiling: Annotated[float | None, typer.Option(help=(
            "Override the saved true-peak ceiling, dBTP."
        ), show_default=False)] = None,
    max_limiting: MaxLimitingOpt = DEFAULT_MASTER.max_limiting_db,
    lock: LockOpt = None,
    range_: RangeOpt = None,
    key: KeyOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Mixes near a saved one (one JSON) or children of two (two JSONs): pick favourites by ear, breed the next round.

    The saved mix's locks and ranges hold in every variation; --lock/--range add to them and win per
    parameter (*.PARAM also replaces inherited STEM.PARAM ones; --range vocal.gain_db=-24:12 lifts an
    inherited lock). Two parents: both files' constraints hold; two different locks of one parameter
    fail unless set here. A dynamic cut keeps the key its parent names; --key sets another.
    """
    reporter = _reporter(quiet)
    constraints = _constraints(lock, range_, key)
    parents = [f for f in files if f.suffix.lower() == ".json"]
    stems = [f for f in files if f.suffix.lower() != ".json"]
    if not parents or len(parents) > 2 or files[: len(parents)] != parents:
        raise ParameterError("vary: give one or two params files (alt-NN.json) first, then the stems")
    if not stems:
        raise ParameterError("vary: give the stems after the params file(s)")
    check_output_folder(out, force=force)
    done: list = []

    def written(w: Written) -> None:
        done.append(w.wav.name)
        if not quiet:
            err_console.print(f"evomix: {w.wav} ready ({w.renders} exact render(s) so far, "
                              f"{reporter.timings_s['total']:.1f} s)", markup=False, soft_wrap=True)

    try:
        result = vary_mixes(parents, stems, spread=spread, n=n, seed=seed, genre=genre, weights=weights,
                            target_lufs=target_lufs, ceiling_dbtp=ceiling, constraints=constraints,
                            max_limiting_db=max_limiting, reporter=reporter, out=out, force=force,
                            on_written=written, command=list(sys.argv))
    except KeyboardInterrupt:
        err_console.print(f"evomix: vary interrupted by Ctrl-C; kept the variations written, each complete: "
                          f"{', '.join(done) or 'none'} in {out}", markup=False, soft_wrap=True)
        raise typer.Exit(code=130) from None
    for w in result.warnings:
        err_console.print(f"evomix: warning: {w}", markup=False, soft_wrap=True)
    summary = _summary(result, out, reporter)
    summary["genome_distance"] = result.settings["genome_distance"]
    for a, d, vs in zip(summary["alternatives"], result.settings["genome_distance"],
                        result.settings["labels_vs_input"]):
        a["genome_distance"], a["labels_vs_input"] = d, vs
    _print_summary(summary, json_out)
    if not json_out:
        for a in summary["alternatives"]:
            out_console.print(f"{Path(a['file']).name}: distance {a['genome_distance']:.3f} from the input; "
                              f"vs the input: {', '.join(a['labels_vs_input']) or 'no single descriptor 1 JND apart'}",
                              markup=False, soft_wrap=True)


@app.command()
@one_line_errors
def explore(
    paths: Annotated[list[Path], typer.Argument(help=(
            "Stem files or folders (every format libsndfile decodes: WAV, FLAC, AIFF, OGG, MP3, ...)."
        ), show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help=(
            "Folder for cell-NN.wav/.json, archive.json and map.png (created if missing)."
        ))],
    descriptors: Annotated[str, typer.Option(help=(
            "2 or 3 map axes: brightness, width, vocal, low_end, punch, dynamics (comma list)."
        ))] = ",".join(("brightness", "width")),
    bins: Annotated[int | None, typer.Option(help=(
            "Cells per axis (2..50; default 12 for 2 axes, 6 for 3)."
        ), show_default=False)] = None,
    genre: GenreOpt = "pop",
    weights: WeightsOpt = None,
    target_lufs: TargetOpt = DEFAULT_MASTER.target_lufs,
    ceiling: CeilingOpt = DEFAULT_MASTER.ceiling_dbtp,
    max_limiting: MaxLimitingOpt = DEFAULT_MASTER.max_limiting_db,
    time_limit: Annotated[float | None, typer.Option("--time-limit", help=(
            "Wall-clock cap of the exploration, seconds (> 0); default 20 s, none with --iterations."
        ), show_default=False)] = None,
    iterations: Annotated[int | None, typer.Option(help=(
            "Stop after this many emitter iterations (>= 0; 64 mixes each); with it the time limit is off unless given."
        ), show_default=False)] = None,
    max_exports: Annotated[int, typer.Option("--max-exports", help=(
            "Cells rendered exactly and exported at most, best first (>= 0; each exact render costs seconds on a full "
            "song)."
        ))] = 16,
    pick: Annotated[Pick, typer.Option("--pick", help=(
            "Which cells to export: best (best quality first) or spread (across the map, among the better half)."
        ))] = Pick.best,
    seed: SeedOpt = DEFAULT_SEARCH.seed,
    role: Annotated[list[str] | None, typer.Option(help=(
            "Set a stem's role, FILE=ROLE (repeatable); roles as for 'evomix mix --role'."))] = None,
    jobs: JobsOpt = DEFAULT_PARALLEL.jobs,
    threads: ThreadsOpt = None,
    lock: LockOpt = None,
    range_: RangeOpt = None,
    key: KeyOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Map the mix space: the best mix in each region of 2-3 listener descriptors (MAP-Elites), a map picture."""
    reporter = _reporter(quiet)
    constraints = _constraints(lock, range_, key)
    parse_descriptors(descriptors)  # before any file is read
    check_output_folder(out, force=force)
    check_parallel_options(jobs, "local", None, threads)
    limit = time_limit if time_limit is not None else None if iterations is not None else DEFAULT_TIME_LIMIT_S
    master = Master(target_lufs=target_lufs, ceiling_dbtp=ceiling, max_limiting_db=max_limiting)
    parallel = Parallel(jobs=jobs, threads=threads)
    result = explore_map(paths, descriptors=descriptors, bins=bins, genre=genre, weights=weights, master=master,
                         time_limit=limit, iterations=iterations, max_exports=max_exports, pick=pick.value, seed=seed,
                         roles=_parse_roles(role), constraints=constraints, parallel=parallel, reporter=reporter)
    for w in result.warnings:
        err_console.print(f"evomix: warning: {w}", markup=False, soft_wrap=True)
    result.write(out, force=force, reporter=reporter)
    s = result.settings
    summary = {"out": str(out), "archive": str(out / "archive.json"), "map": str(out / "map.png"),
               "descriptors": list(result.descriptors), "cells_filled": s["cells_filled"],
               "cells_total": s["cells_total"], "iterations": s["iterations"], "evaluations": s["evaluations"],
               "stop_reason": s["stop_reason"], "search_s": s["search_s"], "exact_renders": s["exact_renders"],
               "constraints": s["constraints"], "warnings": list(result.warnings),
               "exports": [{"file": str(out / f"{result.cells[i]['export']}.wav"),
                            "params": str(out / f"{result.cells[i]['export']}.json"),
                            "measures": result.cells[i]["measures"], "quality": result.cells[i]["quality"],
                            "exact": result.cells[i]["exact"], "labels": result.cells[i]["labels"]}
                           for i in result.exports],
               "timings_s": reporter.timings_s}
    if json_out:
        out_console.print_json(json.dumps(summary))
        return
    axes = result.axes
    t = Table(title=f"{len(result.exports)} of {s['cells_filled']} filled cells exported to {out} "
                    f"({s['cells_filled']} of {s['cells_total']} cells, {s['evaluations']} mixes scored, "
                    f"{s['search_s']:.1f} s, stopped by {s['stop_reason']})")
    t.add_column("file", no_wrap=True)
    for a in axes:
        t.add_column(f"{a['name']} {a['unit']}", justify="right")
    t.add_column("quality", justify="right")
    for n in result.names:
        t.add_column(n, justify="right")
    t.add_column("labels")
    for e in summary["exports"]:
        t.add_row(Path(e["file"]).name, *[(f"{e['measures'][a['name']]:.0f}" if a["unit"] == "Hz" else
                                            f"{e['measures'][a['name']]:.1f}") for a in axes], f"{e['quality']:.3f}",
                  *[f"{e['exact'][n]:.2f}" for n in result.names], ", ".join(e["labels"]) or "-")
    out_console.print(t)
    out_console.print(f"map: {summary['map']}\narchive: {summary['archive']}", markup=False, soft_wrap=True)


@app.command()
@one_line_errors
def render(
    params: Annotated[Path, typer.Argument(help="A saved solution (alt-NN.json).", show_default=False)],
    paths: Annotated[list[Path], typer.Argument(help="The same stems the solution was made from.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (.wav, .flac, .aiff), 24-bit.")],
    target_lufs: Annotated[float | None, typer.Option("--target-lufs", help=(
            "Override the saved loudness target, LUFS."
        ))] = None,
    ceiling: Annotated[float | None, typer.Option(help="Override the saved true-peak ceiling, dBTP.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    quiet: QuietOpt = False,
):
    """Re-render a saved solution from the stems (same samples as the exported file)."""
    path = api.render(params, paths, output, target_lufs=target_lufs, ceiling_dbtp=ceiling, force=force,
                      reporter=_reporter(quiet))
    out_console.print(str(path), markup=False)


@app.command()
@one_line_errors
def analyze(
    files: Annotated[list[Path], typer.Argument(help="Audio files or folders to measure.", show_default=False)],
    json_out: JsonOpt = False,
    genre: Annotated[str | None, typer.Option("--genre", help=(
            "Also report the distance to this genre (built-in name or profile JSON file; a file also joins the "
            "ranking); "
            "the profile --plot draws."
        ))] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help=(
            "Draw each file's long-term spectrum against the --genre profile (default: the closest genre of the first "
            "file) into this PNG."
        ))] = None,
):
    """Measure loudness (LUFS), loudness range, sample/true peak, crest, tilt, width, correlation, closest genre."""
    if plot is not None:  # before any file is measured
        check_output_file(plot, keyword="plot", force=True, inputs=files)
    rows = api.analyze(files, genre=genre)
    if plot is not None:
        sim = rows[0]["genre_similarity"] if rows else []
        prof = load_profile(genre if genre is not None else (sim[0]["genre"] if sim else "pop"))
        report_mod.write_spectrum_plot([r["file"] for r in rows], prof, plot)
    if json_out:
        out_console.print_json(json.dumps(rows))
        return
    _print_analysis(rows, genre)
    if plot is not None:
        out_console.print(f"spectrum plot: {plot}", markup=False, soft_wrap=True)


ANALYSIS_ROWS = [  # (label, unit, key, format), in the order a mastering engineer reads them
    ("integrated loudness", "LUFS", "integrated_lufs", "{:.1f}"),
    ("  by pyloudnorm (independent)", "LUFS", "integrated_lufs_pyloudnorm", "{:.1f}"),
    ("loudness range", "LU", "loudness_range_lu", "{:.1f}"),
    ("max momentary", "LUFS", "max_momentary_lufs", "{:.1f}"),
    ("max short-term", "LUFS", "max_short_term_lufs", "{:.1f}"),
    ("true peak", "dBTP", "true_peak_dbtp", "{:.2f}"),
    ("sample peak", "dBFS", "sample_peak_dbfs", "{:.2f}"),
    ("PLR (peak to loudness)", "dB", "plr_db", "{:.1f}"),
    ("crest factor", "dB", "crest_factor_db", "{:.1f}"),
    ("spectral tilt", "dB/oct", "spectral_tilt_db_per_oct", "{:.2f}"),
    ("stereo width", "0-1", "stereo_width", "{:.2f}"),
    ("L/R correlation", "-1..1", "lr_correlation", "{:.2f}"),
    ("duration", "s", "duration_s", "{:.1f}"),
]


def _print_analysis(rows: list, genre: str | None) -> None:
    """One column per file, one row per measure with its unit; then the closest genres."""
    t = Table(title="evomix analyze", title_justify="left")
    t.add_column("measure", no_wrap=True)
    t.add_column("unit", style="dim", no_wrap=True)
    for r in rows:
        t.add_column(Path(r["file"]).name, justify="right", overflow="fold")
    for label, unit, key, fmt in ANALYSIS_ROWS:
        t.add_row(label, unit, *[("-" if r.get(key) is None else fmt.format(r[key])) for r in rows])
    t.add_section()
    for rank in range(3):
        cells = []
        for r in rows:
            sim = r["genre_similarity"]
            cells.append(f"{sim[rank]['genre']} {sim[rank]['distance']:.1f}" if len(sim) > rank else "-")
        t.add_row(f"closest genre #{rank + 1}" if rank else "closest genre", "dist", *cells)
    if genre is not None:
        t.add_row(f"distance to {genre}", "dist",
                  *[("-" if r.get("genre_distance") is None else f"{r['genre_distance']:.1f}") for r in rows])
    out_console.print(t)
    out_console.print("Genre distances: lower is closer (spectral dB RMS + width and dynamics terms).", markup=False)


@app.command()
@one_line_errors
def profile(
    refs: Annotated[list[Path], typer.Argument(help=(
            "Reference mixes (finished songs, >= 3 s each) or folders of them."
        ), show_default=False)],
    name: Annotated[str, typer.Option("--name", help=(
            "Name of the new profile (shown in reports and front.json)."
        ), show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help=(
            "Profile JSON file to write; use it as 'evomix mix --genre FILE.json'."
        ), show_default=False)],
    description: Annotated[str, typer.Option(help="One-line description stored in the profile.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing profile file.")] = False,
):
    """Learn a genre profile (1/3-octave spectrum, width, PLR, LRA) from reference mixes."""
    files = expand_paths(refs)
    check_profile_output(output, force=force, inputs=files)
    prof = learn_profile(files, name=name, description=description)
    path = write_profile(prof, output, force=force, inputs=files)
    w = prof.width
    out_console.print(f"{path}: profile '{prof.name}' from {len(files)} file(s): PLR {prof.plr_db:.1f} dB, "
                      f"LRA {prof.lra_lu:.1f} LU, {prof.loudness_lufs:.1f} LUFS, "
                      f"width low/mid/high {w['low']:.2f}/{w['mid']:.2f}/{w['high']:.2f}", markup=False, soft_wrap=True)
    out_console.print("space: not learned (a stereo mix does not tell its reverb from its dry sound); the profile "
                      "sets no space target, so a run with it searches no reverb unless you open the sends "
                      "(--range '*.reverb_send_db=-40:0') or add \"space_lu\": [LOW, HIGH] to the file",
                      markup=False, soft_wrap=True)


@app.command()
@one_line_errors
def genres(json_out: JsonOpt = False):
    """List the built-in genre profiles."""
    profs = [load_profile(n) for n in builtin_genres()]
    if json_out:
        out_console.print_json(json.dumps([p.to_dict() for p in profs]))
        return
    t = Table()
    for c in ("genre", "PLR dB", "LRA LU", "description"):
        t.add_column(c)
    for p in profs:
        t.add_row(p.name, f"{p.plr_db:.1f}", f"{p.lra_lu:.1f}", p.description)
    out_console.print(t)


@app.command()
@one_line_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help=(
            "Folder for the demo stems and mixes."
        ))] = Path("evomix-demo"),
    population: PopOpt = DEFAULT_SEARCH.population,
    generations: GenerationsOpt = None,
    seed: SeedOpt = DEFAULT_SEARCH.seed,
    algorithm: AlgorithmOpt = DEFAULT_ALGORITHM,
    time_limit: TimeLimitOpt = DEFAULT_SEARCH.time_limit,
    jobs: JobsOpt = DEFAULT_PARALLEL.jobs,
    threads: ThreadsOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    scheduler: SchedulerOpt = None,
    lock: LockOpt = None,
    range_: RangeOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    open_report: OpenOpt = False,
):
    """Synthesize a short multitrack song and mix it: the whole product path, no files needed."""
    reporter = _reporter(quiet)
    constraints = _constraints(lock, range_)
    check_output_folder(out, force=force)
    search, parallel, master = _settings(  # every option checked before the demo stems are written
        algorithm=algorithm.value, population=population, generations=generations, time_limit=time_limit, seed=seed,
        alternatives=DEFAULT_SEARCH.alternatives, jobs=jobs, threads=threads, backend=backend.value,
        scheduler=scheduler, target_lufs=DEFAULT_MASTER.target_lufs, ceiling_dbtp=DEFAULT_MASTER.ceiling_dbtp,
        max_limiting_db=DEFAULT_MASTER.max_limiting_db)
    created = not out.exists()
    try:
        with reporter.phase("synthesis", info=str(out / "stems")):
            stems = write_demo_stems(out / "stems")
        if not (quiet or json_out):
            err_console.print(f"demo stems written to {out / 'stems'} (the vocal is 15 dB too quiet; chords and lead "
                              f"share 300 Hz-2 kHz)", markup=False)
        _run_mix(stems, out / "mixes", search=search, parallel=parallel, master=master, force=True, quiet=quiet,
                 as_json=json_out, reporter=reporter, constraints=constraints, open_report=open_report)
    except EvomixError:  # a full disk, say: no half-made demo folder is left behind
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


@app.command()
@one_line_errors
def report(
    folder: Annotated[Path, typer.Argument(help=(
            "An output folder of 'evomix mix' (front.json, alt-NN.json, alt-NN.wav ...)."
        ), show_default=False)],
    open_report: OpenOpt = False,
):
    """Rebuild report.html, the listening report, for an existing output folder."""
    path = report_mod.write_report(folder)
    out_console.print(str(path), markup=False, soft_wrap=True)
    if open_report:
        _open(path)


def main() -> None:
    """Console entry point: click usage errors become one line too."""
    try:
        rv = app(standalone_mode=False)
    except NoArgsIsHelpError:  # help was printed
        sys.exit(0)
    except UsageError as e:
        err_console.print(f"evomix: error: {e.format_message()}", markup=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("evomix: aborted", markup=False)
        _exit_aborted()
    except ClickException as e:
        err_console.print(f"evomix: error: {e.format_message()}", markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    if rv == 130:  # a Ctrl-C abort: typer turns KeyboardInterrupt into exit code 130
        _exit_aborted()
    sys.exit(rv if isinstance(rv, int) else 0)


def _exit_aborted() -> None:
    """Exit with code 130 after a Ctrl-C abort, skipping the interpreter's final join of threads.

    A KeyboardInterrupt that lands while a ``ThreadPoolExecutor`` starts a thread leaves a thread
    that no exit handler wakes (CPython registers it after starting it), and that join would wait
    for it forever (seen once in four runs on a loaded machine). The ``finally`` blocks already
    ran while the interrupt unwound (worker pools closed, the checkpoint write finished); the
    ``atexit`` handlers (temporary files) run here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(130)


if __name__ == "__main__":
    main()
