"""The ``evomix`` command line: thin typer commands over ``evomix.api``.

Results go to stdout (``--json`` for machines); progress, warnings and errors go to stderr.
Every expected failure is one line ``evomix: error: ...`` and exit code 1 (2 for usage errors).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

try:  # typer >= 0.20 vendors click under typer._click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, UsageError

    NoArgsIsHelpError = ()
from rich.console import Console
from rich.table import Table
from typing_extensions import Annotated

from evomix import api
from evomix.audio import expand_paths
from evomix.demo import write_demo_stems
from evomix.errors import EvomixError, ParameterError
from evomix.parallel import check_options as check_parallel_options
from evomix.profiling import check_profile_output, learn_profile, write_profile
from evomix.progress import Reporter
from evomix.settings import SettingError
from objectives import builtin_genres, load_profile

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Mix and master multitrack stems by multi-objective genetic search.",
)
out_console = Console()
err_console = Console(stderr=True, highlight=False)


def _fail(e: Exception) -> None:
    err_console.print(f"evomix: error: {e}", markup=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _parse_roles(items: Optional[List[str]]) -> dict:
    roles = {}
    for item in items or []:
        if "=" not in item:
            raise ParameterError(f"--role: expected FILE=ROLE, got '{item}'")
        k, _, v = item.partition("=")
        roles[k.strip()] = v.strip()
    return roles


def _settings(**keywords) -> tuple:
    """The (Search, Parallel, Master) settings of ``evomix.settings``, made once from the flags;
    a bad value is reported with its flag (``--population must be >= 4``)."""
    check_parallel_options(keywords["jobs"], keywords["backend"], keywords["scheduler"], keywords["threads"])
    try:
        return api.settings_of(None, None, None, **keywords)
    except SettingError as e:
        raise e.for_cli() from None


def _reporter(quiet: bool) -> Reporter:
    """Progress on stderr: rich bars on a terminal, plain lines otherwise, nothing with --quiet."""
    return Reporter.auto(quiet=quiet, console=err_console)


def _summary(result: api.MixResult, out: Path, reporter: Reporter) -> dict:
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
        })
    return {
        "out": str(out),
        "front": str(out / "front.json"),
        "front_size": len(result.front),
        "evaluations": result.settings["evaluations"],
        "algorithm": result.settings["algorithm"],
        "generations": result.settings["generations"],
        "stop_reason": result.settings["stop_reason"],  # converged, time limit or generations
        "hypervolume": result.settings["hypervolume"],
        "search_s": round(float(result.search.elapsed_s), 3),
        "replaced_alternatives": result.settings["replaced_alternatives"],
        "exact_renders": result.settings["exact_renders"],
        "genre": result.genre,
        "objectives": list(result.names),
        "silent_stems": list(result.session.silent),
        "warnings": list(result.warnings),
        "reference": result.reference,
        "alternatives": alts,
        "timings_s": reporter.timings_s,  # wall time per phase, and total since the command started
    }


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
                          f"({summary['stop_reason']}, {summary['search_s']:.1f} s), hypervolume {summary['hypervolume']:.4f}",
                          markup=False)
    out_console.print(f"front: {summary['front']}")


def _run_mix(paths, out, genre, target_lufs, ceiling, population, generations, seed, weights,
             alternatives, roles, force, quiet, as_json, reference=None, reference_mode="auto",
             jobs=1, backend="local", scheduler=None, threads=None, reporter=None, algorithm=api.DEFAULT_ALGORITHM,
             time_limit=api.DEFAULT_TIME_LIMIT_S):
    reporter = _reporter(quiet) if reporter is None else reporter
    api.check_output_folder(out, force=force)
    search, parallel, master = _settings(
        algorithm=algorithm, population=population, generations=generations, time_limit=time_limit, seed=seed,
        alternatives=alternatives, jobs=jobs, threads=threads, backend=backend, scheduler=scheduler,
        target_lufs=target_lufs, ceiling_dbtp=ceiling)
    result = api.mix(paths, genre=genre, weights=weights, roles=_parse_roles(roles), reference=reference,
                     reference_mode=reference_mode, reporter=reporter, search=search, parallel=parallel, master=master)
    if result.reference is not None and not as_json:
        ref = result.reference
        err_console.print(f"reference {ref['file']}: {ref['mode']} (fit correlation {ref['correlation']:.3f})", markup=False)
        for key, label in (("fitted", "fitted from the reference"), ("closest_member", "front member closest to it")):
            if key in ref:
                txt = ", ".join(f"{n} {v['gain_db']:+.1f} dB pan {v['pan']:+.2f}" for n, v in ref[key].items())
                err_console.print(f"  {label}: {txt}", markup=False, soft_wrap=True)
    for w in result.warnings:
        err_console.print(f"evomix: warning: {w}", markup=False, soft_wrap=True)
    if result.session.silent:
        err_console.print(f"evomix: note: silent stem(s) kept: {', '.join(result.session.silent)}", markup=False)
    result.write(out, force=force, reporter=reporter)
    summary = _summary(result, out, reporter)
    _print_summary(summary, as_json)
    return summary


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder for alt-NN.wav/.json and front.json (created if missing).")]
GenreOpt = Annotated[str, typer.Option(help="Target genre (see 'evomix genres') or a profile JSON file.")]
TargetOpt = Annotated[float, typer.Option("--target-lufs", help="Integrated loudness of every exported master, LUFS (-40..-5).")]
CeilingOpt = Annotated[float, typer.Option(help="True-peak ceiling of every exported master, dBTP (-9..0).")]
PopOpt = Annotated[int, typer.Option(help="Candidates per generation (>= 4; rounded up to a multiple of 4).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (>= 0): the same seed gives the same front.")]
WeightsOpt = Annotated[Optional[str], typer.Option(help="Objective weights, e.g. 'masking=2,genre=0.5'; 0 switches one off.")]
AltOpt = Annotated[int, typer.Option(help="Number of distinct mixes to export (>= 1).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into a non-empty output folder (replacing earlier results).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr (warnings and errors are still printed).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", help="Local worker processes scoring each generation (>= 1); the front is identical for any N.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Where candidates are scored: local (--jobs processes) or dask (an existing cluster, see --scheduler).")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="Threads scoring each generation on this machine, shared by --jobs (>= 1; default: every core).", show_default=False)]
GenerationsOpt = Annotated[Optional[int], typer.Option(help="Run exactly this many generations (>= 0); default: stop when the front's hypervolume stops growing, or at --time-limit.", show_default=False)]
AlgorithmOpt = Annotated[str, typer.Option("--algorithm", help="Search algorithm: nsga2, nsga3 (reference points; higher hypervolume, weaker steering by --weights) or random (the same budget on random genomes).")]
TimeLimitOpt = Annotated[float, typer.Option("--time-limit", help="Wall-clock cap of the search, seconds (> 0); ignored with --generations.")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running dask scheduler for --backend dask, e.g. tcp://10.0.0.5:8786.")]


@app.command()
def mix(
    paths: Annotated[List[Path], typer.Argument(help="Stem files or folders (WAV, FLAC, AIFF, OGG).", show_default=False)],
    out: OutOpt,
    genre: GenreOpt = "pop",
    target_lufs: TargetOpt = -14.0,
    ceiling: CeilingOpt = -1.0,
    population: PopOpt = 64,
    generations: GenerationsOpt = None,
    seed: SeedOpt = 0,
    weights: WeightsOpt = None,
    algorithm: AlgorithmOpt = api.DEFAULT_ALGORITHM,
    time_limit: TimeLimitOpt = api.DEFAULT_TIME_LIMIT_S,
    alternatives: AltOpt = 5,
    role: Annotated[Optional[List[str]], typer.Option(help="Set a stem's role, FILE=ROLE (repeatable); roles: vocal, drums, kick, snare, bass, guitar, keys, piano, synth, pad, lead, fx, other.")] = None,
    profile: Annotated[Optional[Path], typer.Option(help="A profile JSON (from 'evomix profile'); overrides --genre.")] = None,
    reference: Annotated[Optional[Path], typer.Option(help="A reference track: a rough mix of these stems (its balance is recovered and matched), or another song (its sound becomes the target profile).")] = None,
    reference_mode: Annotated[str, typer.Option(help="auto (detect whether the reference is a mix of these stems), same-song or style.")] = "auto",
    jobs: JobsOpt = 1,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "local",
    scheduler: SchedulerOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Search for mixes of the stems and export a set of distinct finished alternatives."""
    try:
        reporter = _reporter(quiet)  # made first: timings_s["total"] counts from here
        _run_mix(paths, out, str(profile) if profile is not None else genre, target_lufs, ceiling, population,
                 generations, seed, weights, alternatives, role, force, quiet, json_out, reference, reference_mode,
                 jobs, backend, scheduler, threads, reporter, algorithm=algorithm, time_limit=time_limit)
    except EvomixError as e:
        _fail(e)


@app.command()
def render(
    params: Annotated[Path, typer.Argument(help="A saved solution (alt-NN.json).", show_default=False)],
    paths: Annotated[List[Path], typer.Argument(help="The same stems the solution was made from.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (.wav, .flac, .aiff), 24-bit.")],
    target_lufs: Annotated[Optional[float], typer.Option("--target-lufs", help="Override the saved loudness target, LUFS.")] = None,
    ceiling: Annotated[Optional[float], typer.Option(help="Override the saved true-peak ceiling, dBTP.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    quiet: QuietOpt = False,
):
    """Re-render a saved solution from the stems (same samples as the exported file)."""
    try:
        path = api.render(params, paths, output, target_lufs=target_lufs, ceiling_dbtp=ceiling, force=force,
                          reporter=_reporter(quiet))
        out_console.print(str(path), markup=False)
    except EvomixError as e:
        _fail(e)


@app.command()
def analyze(
    files: Annotated[List[Path], typer.Argument(help="Audio files or folders to measure.", show_default=False)],
    json_out: JsonOpt = False,
    genre: Annotated[Optional[str], typer.Option("--genre", help="Also report the distance to this genre (built-in name or profile JSON file; a file also joins the ranking).")] = None,
):
    """Measure loudness (LUFS), loudness range, sample/true peak, crest, tilt, width, correlation, closest genre."""
    try:
        rows = api.analyze(files, genre=genre)
    except EvomixError as e:
        _fail(e)
    if json_out:
        out_console.print_json(json.dumps(rows))
        return
    t = Table()
    cols = [("file", "file", "{}"), ("LUFS", "integrated_lufs", "{:.1f}"), ("LRA", "loudness_range_lu", "{:.1f}"),
            ("peak dBFS", "sample_peak_dbfs", "{:.2f}"), ("TP dBTP", "true_peak_dbtp", "{:.2f}"),
            ("crest dB", "crest_factor_db", "{:.1f}"), ("tilt dB/oct", "spectral_tilt_db_per_oct", "{:.1f}"),
            ("width", "stereo_width", "{:.2f}"), ("corr", "lr_correlation", "{:.2f}")]
    for c, _, _ in cols:
        t.add_column(c)
    t.add_column("genre", no_wrap=True)
    for r in rows:
        sim = r["genre_similarity"]
        t.add_row(*[("-" if r[k] is None else f.format(r[k])) for _, k, f in cols], sim[0]["genre"] if sim else "-")
    out_console.print(t)
    for r in rows:  # distances: lower is closer (dB spectral RMS + width and dynamics penalties)
        sim = r["genre_similarity"]
        text = ", ".join(f"{s['genre']} {s['distance']:.1f}" for s in sim[:3]) if sim else "- (silent)"
        if genre is not None and r.get("genre_distance") is not None:
            text += f"; distance to {genre}: {r['genre_distance']:.1f}"
        out_console.print(f"{r['file']}: closest genres {text}", markup=False, soft_wrap=True)


@app.command()
def profile(
    refs: Annotated[List[Path], typer.Argument(help="Reference mixes (finished songs, >= 3 s each) or folders of them.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Name of the new profile (shown in reports and front.json).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Profile JSON file to write; use it as 'evomix mix --genre FILE.json'.", show_default=False)],
    description: Annotated[str, typer.Option(help="One-line description stored in the profile.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing profile file.")] = False,
):
    """Learn a genre profile (1/3-octave spectrum, width, PLR, LRA) from reference mixes."""
    try:
        files = expand_paths(refs)
        check_profile_output(output, force=force, inputs=files)
        prof = learn_profile(files, name=name, description=description)
        path = write_profile(prof, output, force=force, inputs=files)
    except EvomixError as e:
        _fail(e)
    w = prof.width
    out_console.print(f"{path}: profile '{prof.name}' from {len(files)} file(s): PLR {prof.plr_db:.1f} dB, "
                      f"LRA {prof.lra_lu:.1f} LU, {prof.loudness_lufs:.1f} LUFS, "
                      f"width low/mid/high {w['low']:.2f}/{w['mid']:.2f}/{w['high']:.2f}", markup=False, soft_wrap=True)


@app.command()
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
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo stems and mixes.")] = Path("evomix-demo"),
    population: PopOpt = 64,
    generations: GenerationsOpt = None,
    seed: SeedOpt = 0,
    algorithm: AlgorithmOpt = api.DEFAULT_ALGORITHM,
    time_limit: TimeLimitOpt = api.DEFAULT_TIME_LIMIT_S,
    jobs: JobsOpt = 1,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "local",
    scheduler: SchedulerOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
):
    """Synthesize a short multitrack song and mix it: the whole product path, no files needed."""
    try:
        reporter = _reporter(quiet)
        api.check_output_folder(out, force=force)
        check_parallel_options(jobs, backend, scheduler, threads)
        with reporter.phase("synthesis", info=str(out / "stems")):
            stems = write_demo_stems(out / "stems")
        if not (quiet or json_out):
            err_console.print(f"demo stems written to {out / 'stems'} (the vocal is 15 dB too quiet; chords and lead share 300 Hz-2 kHz)", markup=False)
        _run_mix(stems, out / "mixes", "pop", -14.0, -1.0, population, generations, seed, None, 5, None, True,
                 quiet, json_out, jobs=jobs, backend=backend, scheduler=scheduler, threads=threads, reporter=reporter,
                 algorithm=algorithm, time_limit=time_limit)
    except EvomixError as e:
        _fail(e)


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
        sys.exit(130)
    except ClickException as e:
        err_console.print(f"evomix: error: {e.format_message()}", markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
