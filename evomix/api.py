"""Python API: the front door, the same operations as the command line, for notebooks and scripts.

>>> import evomix
>>> from evomix.settings import Search
>>> result = evomix.mix(["stems/"], genre="pop", search=Search(population=32, generations=20, seed=1))
>>> result.write("out/")                                  # alt-01.wav ..., front.json
>>> evomix.render("out/alt-01.json", ["stems/"], "again.wav")
>>> evomix.analyze(["out/alt-01.wav"])

Every setting has one way in: the settings objects of :mod:`evomix.settings` (``Search``,
``Parallel``, ``Master``), each default and range written once there. The work is the named stages
of :mod:`evomix.pipeline`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from evomix import pipeline
from evomix.core.runtime import available_cores
from evomix.engine.render import render_exact
from evomix.errors import OptionError
from evomix.io.audio import Session, expand_paths, stem_names, write_audio
from evomix.output.result import MixResult, load_params_file, saved_master, saved_params, saved_rate
from evomix.progress import NULL_REPORTER, ProgressReporter
from evomix.search import checkpoint as checkpoints
from evomix.search.constraints import Constraints
from evomix.search.genome import Params
from evomix.search.parallel import ParallelEvaluator
from evomix.settings import Master, Parallel, Search
from evomix.tools.measure import measure_file
from objectives import builtin_genres, load_profile

__all__ = ["mix", "render", "analyze", "MixResult"]


def mix(
    paths: Sequence[str | Path],
    *,
    genre: str = "pop",
    weights: str | Mapping[str, float] | None = None,
    roles: Mapping[str, str] | None = None,
    reference: str | Path | None = None,
    reference_mode: str = "auto",
    constraints: Constraints | None = None,
    search: Search | None = None,
    parallel: Parallel | None = None,
    master: Master | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    reporter: ProgressReporter | None = None,
    progress: Callable | None = None,
    session: Session | None = None,
    keep_master_gain: bool = False,
) -> MixResult:
    """Search for mixes of the stems at ``paths`` and render the chosen alternatives.

    Parameters
    ----------
    paths : sequence of str or Path
        Files or folders of stems (WAV, FLAC, AIFF, OGG, MP3).
    genre : str
        Built-in genre name or a profile JSON path.
    weights : str or mapping, optional
        ``"name=value,..."`` or {objective: weight}; 0 switches one off.
    roles : mapping, optional
        {file or stem name: role} overrides of the roles guessed from file names.
    reference : str or Path, optional
        A reference mix. A rough mix of the same stems ("same-song", detected when the stems
        explain it, or forced) adds the ``reference`` objective and seeds the search with its
        fitted balance; any other track ("style") replaces the genre profile by one learned from it.
    reference_mode : {"auto", "same-song", "style"}
    constraints : Constraints, optional
        Locks and ranges of parameters (``Constraints.parse(locks=["vocal.gain_db=-3"])``); they edit
        the gene table, so every front member and export obeys them.
    search, parallel, master : Search, Parallel, Master, optional
        How to search, where to score, what every master meets (:mod:`evomix.settings`; validated
        when made, errors name their fields). None: the defaults. The front is identical whatever
        ``parallel``.
    checkpoint : str or Path, optional
        A file (``.npz``) the search state is saved to after every generation, atomically.
    resume : str or Path, optional
        A checkpoint to continue from: the same stems and search settings are required
        (``CheckpointError`` names what differs).
    reporter : ProgressReporter, optional
        Progress of the phases (load, analysis, reference, search, render).
    progress : callable, optional
        ``progress(gen, n_gen, front_size, best (n_obj,))`` after every generation.
    session : Session, optional
        An already loaded session (then ``paths`` is ignored).
    keep_master_gain : bool
        Keep each exported alternative's master-chain gain (4 bytes per sample), so that stem and
        DAW exports need not render the master again.

    Returns
    -------
    MixResult
        The front (fast-tier scores) and the exported alternatives (rendered exactly).

    Notes
    -----
    A first Ctrl-C during the search finishes the generation, saves the checkpoint and stops the
    search (``settings["stop_reason"] == "interrupted"``); the front found so far is exported as
    usual. A second Ctrl-C raises ``KeyboardInterrupt`` at once.
    """
    search = pipeline.expect_instance(search, Search, "search")
    parallel = pipeline.expect_instance(parallel, Parallel, "parallel")
    master = pipeline.expect_instance(master, Master, "master")
    pipeline.check_reference_mode(reference_mode)
    constraints = pipeline.check_constraints(constraints)
    profile = load_profile(genre)
    w = pipeline.check_weights(weights, reference=reference)
    call = {"api": "evomix.mix", "arguments": {
        "paths": [str(p) for p in paths or []], "genre": str(genre), **dataclasses.asdict(master),
        **dataclasses.asdict(search), **dataclasses.asdict(parallel),
        "weights": weights if not isinstance(weights, Mapping) else dict(weights), "roles": dict(roles or {}),
        "reference": None if reference is None else str(reference), "reference_mode": reference_mode,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "resume": None if resume is None else str(resume)}}
    ckpt = None if resume is None else checkpoints.load(resume)  # a bad file fails before any audio is read
    with ParallelEvaluator(n_jobs=parallel.jobs, backend=parallel.backend, scheduler=parallel.scheduler,
                           threads=parallel.threads) as evaluator:  # connects now
        result = pipeline.run_mix(paths, evaluator, profile=profile, w=w, search=search, master=master,
                                  constraints=constraints, roles=roles, session=session, reference=reference,
                                  reference_mode=reference_mode, checkpoint=checkpoint, resume=ckpt,
                                  reporter=NULL_REPORTER if reporter is None else reporter, progress=progress,
                                  keep_master_gain=keep_master_gain)
    result.call = call
    return result


def render(params_path: str | Path, paths: Sequence[str | Path], out: str | Path, *,
           target_lufs: float | None = None, ceiling_dbtp: float | None = None,
           force: bool = False, reporter: ProgressReporter | None = None) -> Path:
    """Re-render a saved solution (``alt-NN.json``) from the stems into ``out`` (24-bit).

    The stems are matched by file stem name and must be exactly those the solution was made from
    (a missing or an extra one is refused, naming it); the target and ceiling default to the saved
    ones, so the output reproduces the exported ``alt-NN.wav``. Every saved value is checked (type
    and range) before any audio is read. ``reporter`` (:mod:`evomix.progress`)
    gets the phases load, render and write.
    """
    reporter = NULL_REPORTER if reporter is None else reporter
    source = str(params_path)
    d = load_params_file(params_path)
    p, saved_names = saved_params(d, source)  # every value a number in its range: checked before any audio is read
    sr = saved_rate(d, source)
    master = saved_master(d, source, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp)  # an old file: defaults
    out = Path(out)
    if out.exists() and not force:
        raise OptionError(lambda k: f"{k('out')}: {out} exists; pass {k('force')} to replace it", flags={"out": "-o"})
    pipeline.check_stems_match(saved_names, stem_names(paths), source)  # the stems it was made from, all of them
    session = pipeline.load(paths, reporter, sr=sr)
    if any(out.resolve() == Path(sp).resolve() for sp in session.paths):
        raise OptionError(lambda k: f"{k('out')}: {out} is one of the input stems; refusing to overwrite it",
                          flags={"out": "-o"})
    params = Params.from_dict(p, session.names, source=source)
    with reporter.phase("render", total=1, unit="exact renders") as ph:
        r = render_exact(session, session.is_mono, session.sr, params, target_lufs=master.target_lufs,
                         ceiling_dbtp=master.ceiling_dbtp, keep_stems=False, threads=available_cores())
        ph.advance()
    with reporter.phase("write", total=1, unit="files") as ph:
        path = write_audio(out, r.mix.astype(np.float32), session.sr, subtype="PCM_24")  # as mix() writes it
        ph.advance()
    return path


def analyze(paths: Sequence[str | Path], *, genre: str | None = None) -> list[dict]:
    """Measure audio files (loudness, LRA, peaks, crest, tilt, width, correlation) and rank each
    against the genre profiles (``genre_similarity``: closest first, built-in profiles).

    genre : optional built-in name or profile JSON file; adds ``genre_distance`` to it, and a
        file profile also joins the ranking (its name gets the file name appended if it clashes
        with a built-in one).
    """
    names = builtin_genres()
    profiles = [load_profile(n) for n in names]
    target = None
    if genre is not None:
        target = load_profile(genre)
        if str(genre) not in names:
            if target.name in names:
                target = dataclasses.replace(target, name=f"{target.name} ({Path(genre).name})")
            profiles.append(target)
    return [measure_file(p, genre=target, profiles=profiles) for p in expand_paths(paths)]
