"""The export step of one alternative: processed stems, then the DAW sessions that use them.

:func:`export_alternative` renders the processed stems (the DAW sessions' second set of tracks
plays them, so any ``daw`` format implies them) and writes the requested sessions.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evomix.engine.render import ExactRender
from evomix.output.export.dawproject import write_dawproject
from evomix.output.export.model import DAW_SUFFIX, describe, parse_daw
from evomix.output.export.reaper import write_rpp
from evomix.output.export.stems import render_for_stems, stems_folder_name, write_stems
from evomix.progress import NULL_PHASE, Phase
from evomix.search.genome import Params


def export_alternative(session, params_dict: dict, name: str, out: Path | str, *, target_lufs: float,
                       ceiling_dbtp: float, genre: str, stems: bool = False, pre_stems: bool = False,
                       daw: Sequence[str] = (), threads: int = 1, phase: Phase = NULL_PHASE,
                       render: ExactRender | None = None) -> list[Path]:
    """Write the processed stems and DAW sessions of one alternative into ``out``.

    Parameters
    ----------
    session : evomix.io.audio.Session.  params_dict : the alternative's ``params`` (``alt-NN.json``).
    name : "alt-01".  out : the output folder (exists).
    target_lufs, ceiling_dbtp : the master's targets, LUFS / dBTP (as for its ``alt-NN.wav``).
    genre : the target genre's name (DAW metadata).
    stems : write ``name-stems/`` (post-master; implied by any ``daw``).
    pre_stems : also write ``name-stems-pre/`` (pre-master).
    daw : formats from :data:`DAW_FORMATS` (see :func:`parse_daw`).
    threads : threads of the exact render.  phase : progress, one unit per stem file and session.
    render : the alternative's exact render with its ``master_gain`` (``evomix.api`` keeps it for
        the exported alternatives); without one, the master is rendered again here (the same
        samples: the renderer is deterministic).

    Returns the written paths (folders for the stems).
    """
    daw = parse_daw(list(daw))
    out = Path(out)
    written: list[Path] = []
    if not (stems or pre_stems or daw):
        return written
    params = Params.from_dict(params_dict, session.names, source=name)
    if render is None or render.master_gain is None:
        render = render_for_stems(session, params, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp,
                                  threads=threads)
    post = stems_folder_name(name, "post")
    if stems or daw:
        written.append(write_stems(session, params, out / post, render, kind="post", phase=phase).folder)
    if pre_stems:
        written.append(write_stems(session, params, out / stems_folder_name(name, "pre"), render, kind="pre",
                                   phase=phase).folder)
    if daw:
        mix = describe(session, params_dict, name, out, processed_folder=post, genre=genre, target_lufs=target_lufs,
                       ceiling_dbtp=ceiling_dbtp, normalise_db=render.normalise_db,
                       limiter_gr_db=render.limiter_gr_db)
        for fmt in daw:
            writer = write_dawproject if fmt == "dawproject" else write_rpp
            written.append(writer(mix, out / f"{name}{DAW_SUFFIX[fmt]}"))
            phase.advance()
    return written
