"""Processed stems: each stem as it sounds in one exported mix, as float WAV files that sum to it.

What is written, for an alternative ``alt-NN`` (exact tier, ``evomix.engine.render``):

* **post-master** (``alt-NN-stems/<stem>.wav``): stem ``s`` through its strip (trim, EQ,
  compressor, fader, pan), the master's two shelves, then multiplied by the master chain's gain
  ``G(t)`` (:class:`evomix.engine.render.MasterGain`): compressor control gain x normalisation x
  limiter gain. The render applies the master EQ to each stem (it is linear and time-invariant)
  and the rest of the master is a pure per-sample gain, the same on both channels (the compressor
  is stereo-linked, normalisation is a constant, the limiter's gain is one value per sample), so
  ``master[c, t] = G(t) * sum_s y_s[c, t] = sum_s (G(t) y_s[c, t])``: the files sum to the master
  up to float32 rounding (< 1e-6 here; ``tests/test_export_stems.py`` checks 1e-5 against the
  24-bit ``alt-NN.wav``, whose own quantisation step is 2^-23). ``G`` is computed from the whole
  mix: a stem file is that stem's share of the master, not the stem alone through the master.
* **pre-master** (``alt-NN-stems-pre/<stem>.wav``, optional): the same strips without the master
  EQ and without ``G``: their sum is the master bus input, for redoing the master elsewhere.
* **the reverb return** (``REVERB_RETURN_FILE``, ``reverb-return.wav`` in the same folder), when any
  send is on: the sends (each strip times its send gain, summed in stem order,
  ``engine.render.add_send``) through the bus's reverb (``engine.dsp.reverb.ReverbStream``, Jot &
  Chaigne 1991), then ``G`` for "post": the render's own return, bit for bit, so the stems and the
  return sum to the master as above. For "pre" the sends are taken before the master EQ (the
  reverb and the EQ are both linear and time-invariant, so the order only changes the rounding).
  None is written when every send is off.

Stems are produced one at a time and written as they are produced (float32), so memory holds the
master render (2 x samples float64, its limiter gain) and one stem buffer (and the send bus when a
send is on), never all stems.

Source: the exact tier's signal flow (``evomix.engine.render``; RBJ Audio EQ Cookbook for the
shelves, Giannoulis, Massberg & Reiss, JAES 60(6), 2012 for the compressor's control gain); the
sum rule is superposition through a linear time-invariant filter followed by a gain.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evomix.engine.render import ExactRender, add_send, iter_stem_strips, render_exact, reverb_stream, send_gains
from evomix.errors import ParameterError
from evomix.io.files import atomic_folder, write_float_wav
from evomix.progress import NULL_PHASE, Phase
from evomix.search.genome import Params

STEM_KINDS = ("post", "pre")
REVERB_RETURN = "reverb-return"  # the return's entry in ``StemFiles.files`` and its file's stem name
REVERB_RETURN_FILE = f"{REVERB_RETURN}.wav"
RETURN_CHUNK = 1 << 18  # samples per call of the return (its output does not depend on the chunking)


def stems_folder_name(alt_name: str, kind: str = "post") -> str:
    """``alt-01-stems`` (post-master) or ``alt-01-stems-pre`` (pre-master)."""
    return f"{alt_name}-stems" if kind == "post" else f"{alt_name}-stems-pre"


@dataclass(frozen=True)
class StemFiles:
    """Processed stems written for one alternative.

    folder : the folder holding them.  files : {stem name: path}, in session order, then
    ``REVERB_RETURN`` when a send is on.
    kind : "post" or "pre".  sr : Hz.  n_samples : samples per file (the session length).
    """

    folder: Path
    files: dict
    kind: str
    sr: int
    n_samples: int


def render_for_stems(session, params: Params, *, target_lufs: float, ceiling_dbtp: float,
                     threads: int = 1) -> ExactRender:
    """The exact master of candidate 0 of ``params`` with its master gain kept (no stems held)."""
    return render_exact(session, session.is_mono, session.sr, params, target_lufs=target_lufs,
                        ceiling_dbtp=ceiling_dbtp, keep_stems=False, keep_master_gain=True, threads=threads)


def write_stems(session, params: Params, folder: Path | str, render: ExactRender, *, kind: str = "post",
                phase: Phase = NULL_PHASE) -> StemFiles:
    """Write each stem's processed signal into ``folder`` (created or replaced atomically).

    Parameters
    ----------
    session : evomix.io.audio.Session, the stems the mix was made from.
    params : Params, one candidate (pop = 1), e.g. ``Params.from_dict(alt["params"], session.names)``.
    folder : destination folder; its parent must exist.
    render : the candidate's :func:`render_for_stems` (its ``master_gain`` is needed for "post").
    kind : "post" (sum = the master) or "pre" (sum = the master bus before the master EQ).
    phase : progress, one unit per stem.

    Raises
    ------
    ParameterError
        Unknown ``kind`` or a render without its master gain.
    """
    if kind not in STEM_KINDS:
        raise ParameterError(f"stems kind: unknown '{kind}'; choose from {', '.join(STEM_KINDS)}")
    if kind == "post" and render.master_gain is None:
        raise ParameterError("write_stems: the render has no master gain; render with keep_master_gain=True")
    folder = Path(folder)
    files = {}
    if REVERB_RETURN in session.names and params.has_reverb:
        raise ParameterError(f"write_stems: a stem is named '{REVERB_RETURN}', the reverb return's file; rename it")
    reverb = reverb_stream(params, 0, session.sr)  # None: every send off
    sends = send_gains(params, 0)  # (stems,) linear
    send = np.zeros((2, session.n_samples)) if reverb is not None else None  # the send bus
    with atomic_folder(folder) as tmp:
        for s, buf in iter_stem_strips(session, session.is_mono, session.sr, params, master_eq=(kind == "post")):
            if send is not None:
                add_send(send, sends[s], buf)
            if kind == "post":
                render.master_gain.apply(buf)  # (2, samples), in place
            name = session.names[s]
            write_float_wav(tmp / f"{name}.wav", buf, session.sr)
            files[name] = folder / f"{name}.wav"
            phase.advance()
        if reverb is not None:  # the return, chunk by chunk as the render runs it (the same samples)
            ret = np.concatenate([reverb.process(send[:, a : a + RETURN_CHUNK])
                                  for a in range(0, send.shape[-1], RETURN_CHUNK)], axis=1)
            del send
            if kind == "post":
                render.master_gain.apply(ret)
            write_float_wav(tmp / REVERB_RETURN_FILE, ret, session.sr)
            files[REVERB_RETURN] = folder / REVERB_RETURN_FILE
    return StemFiles(folder, files, kind, int(session.sr), int(session.n_samples))
