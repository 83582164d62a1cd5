"""Output places: checked before any audio is read, so a run never fails after its work is done."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evomix.errors import OptionError

OUTPUT_NAMES = ("front.json", "before.wav", "report.html", "report-data.json", "run.json")


def check_output_folder(out: Path, *, force: bool, inputs: Sequence[Path] = (), ignore: Sequence[Path] = ()) -> None:
    """Fail early (before any search) if ``out`` cannot take the results.

    ``ignore``: files that may be in ``out`` without ``force`` (the run's own checkpoint).

    Raises
    ------
    ParameterError
        ``out`` is a file, or a non-empty folder without ``force``, or an output would replace a stem.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError(lambda k: f"{k('out')}: {out} is a file, not a folder")
    own = {Path(p).resolve() for p in ignore if p is not None}
    if out.is_dir() and any(p.resolve() not in own for p in out.iterdir()) and not force:
        raise OptionError(lambda k: f"{k('out')}: {out} is not empty; choose a new folder or pass {k('force')}")
    resolved = {Path(p).resolve() for p in inputs}
    for p in out.glob("*") if out.is_dir() else []:
        if p.resolve() in resolved and (p.name.startswith("alt-") or p.name in OUTPUT_NAMES):
            raise OptionError(lambda k, p=p: f"{k('out')}: {p} is one of the input stems; refusing to overwrite it")

