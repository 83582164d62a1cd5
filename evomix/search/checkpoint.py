"""Checkpoints of a search: save after every generation, resume exactly, refuse what does not match.

A checkpoint is one ``.npz`` file (numpy's zip of ``.npy`` arrays, read with
``allow_pickle=False``: loading one runs no code). It holds

* the arrays of a :class:`evomix.search.algorithm.SearchState`, the dump of a
  :class:`~evomix.search.algorithm.Evolution` (population, its fitness and crowding distance, the
  archive, hypervolume and logbook columns, the normaliser, the key of the search's legacy numpy
  Mersenne Twister) under their field names;
* ``header``: UTF-8 JSON bytes, ``{"format": "evomix-checkpoint/1", "gen", "evaluations",
  "elapsed_s", "settings", "stems", "rng"}``. ``rng`` has the rest of the three generator states
  (the search's own ``random.Random`` and ``np.random.RandomState`` states, in ``getstate()`` and
  ``get_state()`` form, and the random algorithm's PCG64 ``bit_generator.state``; JSON keeps Python
  ints and floats exactly). ``settings``
  (:func:`search_settings`) are what determine the search; ``stems`` (:func:`stems_fingerprint`)
  names each stem's file, size, role and the SHA-256 of its bytes.

It is written to a temporary name in its folder, fsynced and renamed over the old one
(``evomix.io.files.write_bytes_atomic``), so a crash or a second Ctrl-C leaves the previous
generation's checkpoint intact, never half a file. :class:`Saver` writes on a background thread,
one generation at a time, so the search does not wait for the disk.

Cost: the stems are hashed once per run, only when checkpointing or resuming; each save encodes
the arrays uncompressed on the search's thread and leaves the write to the background thread
(figures in the README, "Checkpoint, resume, Ctrl-C").
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evomix import __version__
from evomix.errors import EvomixError, ParameterError
from evomix.io.files import write_bytes_atomic
from evomix.io.places import check_creatable
from evomix.search.algorithm import SearchState
from evomix.search.hypervolume import Normaliser

FORMAT = "evomix-checkpoint/1"
DEFAULT_NAME = "checkpoint.npz"  # written into the output folder when a run without --checkpoint is interrupted

_ARRAYS = ("population", "population_F", "crowding", "archive_G", "archive_F", "hypervolume",
           "logbook_evals", "logbook_front", "logbook_min")


class CheckpointError(ParameterError):
    """A checkpoint cannot be used; ``option`` ("resume" or "checkpoint") names the argument.

    The message names the Python keyword (``resume: ...``); :meth:`for_cli` names the flag."""

    def __init__(self, option: str, detail: str):
        super().__init__(f"{option}: {detail}")
        self.option, self.detail = option, detail

    def for_cli(self) -> ParameterError:
        """The same error naming the command-line flag (``--resume: ...``)."""
        return ParameterError(f"--{self.option}: {self.detail}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the search state and what it was made from."""

    path: Path
    state: SearchState
    settings: dict
    stems: list
    evomix_version: str


def _json_ready(x):
    """``x`` as JSON gives it back (tuples become lists, numpy scalars plain numbers)."""
    return json.loads(json.dumps(x, default=lambda o: o.item() if isinstance(o, np.generic) else list(o)))


def search_settings(*, algorithm: str, population: int, seed: int, objectives: Sequence[str],
                    weights: Sequence[float], profile: dict, target_lufs: float, ceiling_dbtp: float,
                    constraints: dict, max_limiting_db: float | None = None, roles: dict, sr: int, n_genes: int,
                    reference: dict | None,
                    normaliser: Normaliser) -> dict:
    """The settings that determine a search's sequence (two runs that differ in any of them
    cannot continue each other), as JSON-ready values. Not in it: the termination (``generations``,
    ``time_limit``: resuming with a larger budget is the point), where candidates are scored (the
    front is the same for any ``jobs``/``threads``/``backend``) and the number of alternatives."""
    return _json_ready({
        "algorithm": algorithm, "population": int(population), "seed": int(seed), "objectives": list(objectives),
        "weights": [float(w) for w in weights], "genre": profile, "target_lufs": float(target_lufs),
        "ceiling_dbtp": float(ceiling_dbtp),
        "max_limiting_db": None if max_limiting_db is None else float(max_limiting_db),
        "constraints": constraints, "roles": dict(roles), "sr": int(sr),
        "genes": int(n_genes), "reference": reference,
        "normaliser": {"ideal": [float(v) for v in normaliser.ideal], "scale": [float(v) for v in normaliser.scale]},
    })


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stems_fingerprint(session) -> list[dict]:
    """``[{"name", "file", "bytes", "role", "sha256"}]`` per stem of a ``Session``, in its order
    (``sha256`` of the file's bytes; of the decoded float32 audio, as ``audio_sha256``, for a
    stem whose file is gone)."""
    out = []
    for i, (name, path, role) in enumerate(zip(session.names, session.paths, session.roles)):
        p = Path(path)
        d = {"name": name, "file": p.name, "role": role}
        if p.is_file():
            d["bytes"] = p.stat().st_size
            d["sha256"] = file_sha256(p)
        else:
            audio = np.ascontiguousarray(session.stem(i), dtype=np.float32)
            d["audio_sha256"] = hashlib.sha256(audio.tobytes()).hexdigest()
        out.append(d)
    return out


def encode(state: SearchState, *, settings: dict, stems: list) -> bytes:
    """The ``.npz`` bytes of a checkpoint (module docstring)."""
    version, mt, gauss = state.random_state
    name, keys, pos, has_gauss, cached = state.numpy_state
    header = {"format": FORMAT, "evomix_version": __version__, "gen": int(state.gen),
              "evaluations": int(state.evaluations), "elapsed_s": float(state.elapsed_s),
              "settings": settings, "stems": stems,
              "rng": {"random": [version, list(mt), gauss],
                      "numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss),
                                "cached_gaussian": float(cached)},
                      "uniform": state.uniform_state}}
    arrays = {k: np.asarray(getattr(state, k)) for k in _ARRAYS}
    if state.best_achievement is not None:
        arrays["best_achievement"] = np.asarray(state.best_achievement, dtype=float)
    arrays |= {"normaliser_ideal": np.asarray(state.normaliser.ideal, dtype=float),
               "normaliser_scale": np.asarray(state.normaliser.scale, dtype=float),
               "numpy_keys": np.asarray(keys, dtype=np.uint32),
               "header": np.frombuffer(json.dumps(_json_ready(header)).encode(), dtype=np.uint8)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save(path: str | Path, state: SearchState, *, settings: dict, stems: list) -> Path:
    """Write the checkpoint of ``state`` to ``path`` atomically (temporary name, fsync, rename)."""
    return write_bytes_atomic(Path(path), encode(state, settings=settings, stems=stems))


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files a killed writer left beside the checkpoint ``path``
    (``.NAME.*.tmp``, :func:`evomix.io.files.temp_beside`); returns them. Only one run writes a
    checkpoint file at a time, so any such file is an orphan."""
    gone = []
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        try:
            tmp.unlink()
            gone.append(tmp)
        except OSError:
            pass
    return gone


class Saver:
    """``on_generation`` for :class:`evomix.search.algorithm.Evolution` (and ``run_search``): saves every
    generation's state to ``path`` (its folder is created), as a context manager.

    The state is encoded at once; the file is written, fsynced (most of the cost) and renamed on
    one background thread while the next generation is scored. One
    write is in flight at a time: each call first waits for the previous generation's file, so
    every generation is saved, in order. Leaving the ``with`` block (or :meth:`close`) waits for
    the last one. ``saved`` is the last generation whose file is complete, or None.

    >>> with Saver("run.npz", settings=..., stems=...) as saver:
    ...     run_search(evaluate, initial, on_generation=saver)
    """

    def __init__(self, path: str | Path, *, settings: dict, stems: list):
        self.path, self.settings, self.stems = Path(path), settings, stems
        remove_stale_temporaries(self.path)
        self.saved: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple | None = None  # (generation, future) of the write in flight

    def __call__(self, state: SearchState) -> None:
        """Encode ``state`` now and write it on the background thread (after the previous one)."""
        data = encode(state, settings=self.settings, stems=self.stems)
        self.wait()
        if self._pool is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="evomix-checkpoint")
        self._pending = (int(state.gen), self._pool.submit(write_bytes_atomic, self.path, data))

    def wait(self) -> None:
        """Until the write in flight is complete (its error, if any, is raised here)."""
        if self._pending is not None:
            gen, future = self._pending
            self._pending = None
            future.result()
            self.saved = gen

    def close(self) -> None:
        """Wait for the last write (its error, if any, is raised here) and stop the thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> Saver:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing (a second Ctrl-C, an error): finish the file, keep that exception
            self.close()
        except EvomixError:
            pass


def load(path: str | Path, *, option: str = "resume") -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Raises
    ------
    CheckpointError
        No such file, not an ``.npz`` archive, not an evomix checkpoint (or another format
        version), or damaged (a missing or malformed part).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(option, f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    remove_stale_temporaries(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise CheckpointError(option, f"{path}: cannot read ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise CheckpointError(option, f"{path} is not an evomix checkpoint (not a .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "header" not in z.files:
                raise CheckpointError(option, f"{path} is not an evomix checkpoint (no header in the archive)")
            header = json.loads(z["header"].tobytes().decode())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                got = header.get("format") if isinstance(header, dict) else None
                raise CheckpointError(option, f"{path} is not an evomix checkpoint "
                                              f"(format {got!r}, expected {FORMAT!r})")
            arrays = {k: z[k] for k in (*_ARRAYS, "normaliser_ideal", "normaliser_scale", "numpy_keys")}
            if "best_achievement" in z.files:  # since issue 23 (older checkpoints: unknown, NaN)
                arrays["best_achievement"] = z["best_achievement"]
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(option, f"{path} is not a readable evomix checkpoint ({type(e).__name__}: {e})") from None
    except KeyError as e:
        raise CheckpointError(option, f"{path} is a damaged checkpoint (no {e} array)") from None
    try:
        state = _state(header, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(option, f"{path} is a damaged checkpoint ({type(e).__name__}: {e})") from None
    return Checkpoint(path, state, header["settings"], header["stems"], str(header.get("evomix_version", "")))


def _state(header: dict, a: dict) -> SearchState:
    """The :class:`SearchState` of a checkpoint's header and arrays, with its shapes checked."""
    gen = int(header["gen"])
    n_pop, n_genes = a["population"].shape
    n_obj = a["population_F"].shape[1]
    shapes = {"population_F": (n_pop, n_obj), "crowding": (n_pop,), "archive_F": (len(a["archive_G"]), n_obj),
              "archive_G": (len(a["archive_G"]), n_genes), "hypervolume": (gen + 1,), "logbook_evals": (gen + 1,),
              "logbook_front": (gen + 1,), "logbook_min": (gen + 1, n_obj), "normaliser_ideal": (n_obj,),
              "normaliser_scale": (n_obj,), "numpy_keys": (624,), "best_achievement": (gen + 1,)}
    for k, shape in shapes.items():
        if k in a and a[k].shape != shape:
            raise ValueError(f"{k} has shape {a[k].shape}, expected {shape}")
    rng = header["rng"]
    version, mt, gauss = rng["random"]
    np_state = rng["numpy"]
    return SearchState(
        gen=gen, evaluations=int(header["evaluations"]), elapsed_s=float(header["elapsed_s"]),
        **{k: a[k] for k in _ARRAYS},
        normaliser=Normaliser(a["normaliser_ideal"].astype(float), a["normaliser_scale"].astype(float)),
        random_state=(int(version), tuple(int(v) for v in mt), gauss),
        numpy_state=(str(np_state["name"]), a["numpy_keys"].astype(np.uint32), int(np_state["pos"]),
                     int(np_state["has_gauss"]), float(np_state["cached_gaussian"])),
        uniform_state=rng["uniform"],
        best_achievement=a["best_achievement"].astype(float) if "best_achievement" in a else None)


def _show(v) -> str:
    s = json.dumps(v, sort_keys=True)
    return s if len(s) <= 60 else s[:57] + "..."


def check_matches(ckpt: Checkpoint, *, settings: dict, stems: list | None = None, option: str = "resume") -> None:
    """Refuse to continue ``ckpt`` with other stems or other search settings.

    ``stems`` None: only the settings are compared (the stems were checked earlier).

    Raises
    ------
    CheckpointError
        Naming what differs: the stem files (changed, new, missing, renamed roles) or each
        setting, with the saved and the present value.
    """
    if stems is not None:
        check_stems(ckpt, stems, option=option)
    diff = [f"{k} {_show(ckpt.settings.get(k))} (saved) vs {_show(v)} (now)"
            for k, v in _json_ready(settings).items() if ckpt.settings.get(k) != v]
    diff += [f"{k} {_show(v)} (saved) vs none (now)" for k, v in ckpt.settings.items() if k not in settings]
    if diff:
        raise CheckpointError(option, f"{ckpt.path} was made with other search settings: {'; '.join(diff)}; "
                                      f"give the same options as the run that wrote it")


def check_stems(ckpt: Checkpoint, stems: list, *, option: str = "resume") -> None:
    """Refuse ``stems`` (:func:`stems_fingerprint`) other than the checkpoint's (see :func:`check_matches`)."""
    saved = {s["name"]: s for s in ckpt.stems}
    now = {s["name"]: s for s in stems}
    diff = [f"{saved[n]['file']} is missing" for n in saved if n not in now]
    diff += [f"{now[n]['file']} is new" for n in now if n not in saved]
    for n in (n for n in now if n in saved):
        a, b = saved[n], now[n]
        if a.get("sha256", a.get("audio_sha256")) != b.get("sha256", b.get("audio_sha256")):
            diff.append(f"{b['file']} has other content" + (f" ({a['bytes']} -> {b['bytes']} bytes)"
                                                             if a.get("bytes") not in (None, b.get("bytes")) else ""))
        elif a.get("role") != b.get("role"):
            diff.append(f"{b['file']} has role {b.get('role')} (saved: {a.get('role')})")
    if not diff and [s["name"] for s in ckpt.stems] != [s["name"] for s in stems]:
        diff.append("the stems are in another order")
    if diff:
        raise CheckpointError(option, f"{ckpt.path} was made from other stems: {', '.join(diff)}")


def check_target(path: str | Path, *, inputs: Sequence[str | Path] = (), resume: str | Path | None = None,
                 force: bool = False, option: str = "checkpoint") -> Path:
    """Fail before any work if ``path`` cannot take a checkpoint: a folder, one of the input
    stems, or an existing file that is neither the checkpoint resumed from nor allowed by ``force``."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(option, f"{path} is a folder; give a file name such as {path / DEFAULT_NAME}")
    if path.exists() and any(path.resolve() == Path(p).resolve() for p in inputs):
        raise CheckpointError(option, f"{path} is one of the input stems; refusing to overwrite it")
    same = resume is not None and Path(resume).exists() and path.exists() and path.resolve() == Path(resume).resolve()
    if path.exists() and not same and not force:
        raise CheckpointError(option, f"{path} exists; pass --force to replace it, or resume from it")
    check_creatable(path, keyword=option, folder=False)  # its folder is made if missing; below a file, read-only: no
    return path


__all__ = ["FORMAT", "DEFAULT_NAME", "Checkpoint", "CheckpointError", "Saver", "search_settings", "stems_fingerprint",
           "save", "load", "check_matches", "check_stems", "check_target", "encode", "file_sha256"]
