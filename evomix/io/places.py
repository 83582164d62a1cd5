"""Output places: checked before any audio is read, so a run never fails after its work is done."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from evomix.errors import OptionError

OUTPUT_NAMES = ("front.json", "before.wav", "report.html", "report-data.json", "run.json")


def check_output_folder(out: Path, *, force: bool, inputs: Sequence[Path] = (), ignore: Sequence[Path] = (),
                        flags: dict | None = None) -> None:
    """Fail early (before any audio is read) if ``out`` cannot take the results.

    ``ignore``: files that may be in ``out`` without ``force`` (the run's own checkpoint).

    Raises
    ------
    ParameterError
        ``out`` is a file, or a non-empty folder without ``force``, or an output would replace a
        stem, or ``out`` cannot be made or written (below a file, a read-only file system:
        :func:`check_creatable`).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError(lambda k: f"{k('out')}: {out} is a file, not a folder", flags=flags)
    own = {Path(p).resolve() for p in ignore if p is not None}
    if out.is_dir() and any(p.resolve() not in own for p in out.iterdir()) and not force:
        raise OptionError(lambda k: f"{k('out')}: {out} is not empty; choose a new folder or pass {k('force')}")
    resolved = {Path(p).resolve() for p in inputs}
    for p in out.glob("*") if out.is_dir() else []:
        if p.resolve() in resolved and (p.name.startswith("alt-") or p.name in OUTPUT_NAMES):
            raise OptionError(lambda k, p=p: f"{k('out')}: {p} is one of the input stems; refusing to overwrite it")
    check_creatable(out, keyword="out", flags=flags)


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (``Path.exists`` follows links)."""
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def check_creatable(path: Path, *, keyword: str, flags: dict | None = None, folder: bool = True) -> None:
    """Raise :class:`OptionError` unless ``path`` (a folder, or with ``folder=False`` a file) can be
    made: each existing part of it is a folder, and its nearest existing folder takes a new entry.

    The check makes and removes a hidden temporary folder there, so it sees what a permission test
    cannot (a read-only file system, which root too is refused, a full quota), and reports the
    operating system's reason.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise OptionError(lambda k: f"{k(keyword)}: {path} is a broken link or a link loop", flags=flags)
    target = path if folder else path.parent
    base = _nearest_existing(target)
    if not base.is_dir():
        raise OptionError(lambda k: f"{k(keyword)}: {path} is below {base}, which is a file, not a folder",
                          flags=flags)
    try:
        probe = tempfile.mkdtemp(prefix=".evomix-probe-", dir=base)
        os.rmdir(probe)
    except OSError as e:
        reason = e.strerror or str(e)
        raise OptionError(lambda k: f"{k(keyword)}: cannot write {path} ({reason})", flags=flags) from None


def check_output_file(path: Path, *, keyword: str, force: bool, inputs: Sequence[Path] = (),
                      flags: dict | None = None) -> None:
    """Fail before any work if the file ``path`` cannot be written: a folder, one of the inputs, an
    existing file without ``force``, a missing or unwritable folder (:func:`check_creatable`)."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(lambda k: f"{k(keyword)}: {path} is a folder, not a file", flags=flags)
    if path.exists() and any(path.resolve() == Path(p).resolve() for p in inputs):
        raise OptionError(lambda k: f"{k(keyword)}: {path} is one of the inputs; refusing to overwrite it", flags=flags)
    if path.exists() and not force:
        raise OptionError(lambda k: f"{k(keyword)}: {path} exists; pass {k('force')} to replace it", flags=flags)
    base = _nearest_existing(path.parent)
    if base.is_dir() and base != path.parent:
        raise OptionError(lambda k: f"{k(keyword)}: folder {path.parent} does not exist", flags=flags)
    check_creatable(path, keyword=keyword, flags=flags, folder=False)  # below a file, read-only, ...

