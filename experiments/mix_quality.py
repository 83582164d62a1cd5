"""Mix quality as a mix engineer reads it: each stem's loudness in the exported mixes against an
engineer's balance, the low end, lead over backing vocals, the bed of a two-stem session, and what
masking and genre distance the alternatives reach (issue 21, item 2).

For every song, ``evomix mix STEMS --out DIR --genre G --seed S --export-stems`` runs as a new user
would run it: the default search (population 64, until it converges or 30 s) and five alternatives;
only the genre that fits and the seed are passed (and ``--role`` for a backing vocal when evomix
has a ``backing_vocal`` role). Then, for

* the **equal-gain sum**: every stem at unity (trim 0 dB, fader 0 dB, centred, flat, no
  compression), rendered by evomix's exact tier (``render_exact`` of the neutral params) and so
  normalised to -14 LUFS by the same master normalisation and limiter;
* the **engineer's reference**, where the song has one (see the songs below);
* each of the five **exported alternatives**, from ``alt-NN-stems/`` (each stem as it sounds in
  the mix; they sum to ``alt-NN.wav``),

it measures each stem's integrated loudness relative to the mix (LU), and each role's (the stems
of one role summed), and their deviation from the engineer's; the balance RMS deviation (dB RMS over
stems); the mean (and worst) deviation over the five alternatives of the kick (drums where there is
no kick stem) and of the bass; whether every backing vocal sits under the lead; masking relative to
the equal-gain sum (each alternative's exact ``masking`` score from ``alt-NN.json`` over the
equal-gain sum's, scored by ``objectives.evaluate`` on its exact render); the genre distance (exact
``genre`` score) of the best alternative; for two-stem sessions each alternative's bed pan (from
``alt-NN.json``) and lead level relative to the bed; and whether the five are pairwise distinct by
evomix's rule (``evomix.choose.describe``: some descriptor differs by >= 1 JND). Issue 22: the
reverb return's loudness relative to the master (``alt-NN-stems/reverb-return.wav``, pyloudnorm),
its span over the five and whether it lies in the genre's ``space_lu`` range (on the synthesized,
dry songs), the quietest stem re the mix, and whether the best masking is 20 % under the sum's.

Meter: pyloudnorm (ITU-R BS.1770-4 with gating, an implementation independent of evomix's meter;
C. J. Steinmetz & J. D. Reiss, 150th AES Convention, 2021) for every loudness figure; evomix's own
reading of each master is kept in the JSON (``evomix_lufs``) as a cross-check.

Songs (``--songs``, default all):

* ``rock``: ``../shared/stems/rock`` (6 stems, 20 s), an engineer's balance: its
  ``reference_params.json`` gives each stem's EQ, pan and ``intended_level_lufs`` (vocal -19,
  drums -19, bass -21, guitar -21, lead -23, keys -27 LUFS, the sum at -14.04 LUFS). The reference
  is re-rendered here from those settings (checked against ``reference_mix.flac``) and its stems
  measured. Genre ``rock``.
* ``ballad``: ``../shared/stems/ballad`` (6 stems, 20 s), an unbalanced rough mix whose
  ``reference_params.json`` levels are arbitrary (its README: "not an engineer's balance"): its
  figures are reported without a deviation. Genre ``acoustic``.
* ``pop``, ``edm``: synthesized here (:mod:`evomix.testing.songs`, 120 BPM, A minor, 20 s) with
  the designed balances in ``SYNTH_SONGS`` (each stem's loudness relative to the mix, LU: a
  choice, modelled on the shared rock's intended levels -- lead vocal and drums on top around
  -5 LU, bass 2 dB under the drums, pads and backing parts 7-10 LU under the lead; no published
  table is copied). Genres ``pop`` and ``edm``.
* ``duo-vocal``, ``duo-guitar``: two-stem sessions synthesized here: a stereo bed (drums, bass and
  keys or a rhythm guitar summed into one stem with a designed sub-balance) and a lead (a vocal;
  a lead line standing in for a lead guitar), the lead designed 1 and 2.5 LU under the bed (a
  choice). Genres ``pop`` and ``rock``.

The engineer's reference of a synthesized song: each stem file's integrated loudness measured
(BS.1770, pyloudnorm), the stem scaled to its designed level, the stems summed and the sum
normalised to -14 LUFS (plain gains, no limiter: it is a measurement target, not an export). The
stem files themselves are written at spread raw loudness (seeded, -26..-16 LUFS, like a real
session), so the equal-gain sum is not the designed balance. Deviations are taken from the
reference as measured ("engin." column), which keeps the designed differences between stems but
sits about 0.5-1 LU above the "design" column: stems that are silent in parts (gated loudness)
do not power-sum to the mix's loudness, so the designed levels cannot all hold at once.

The "best" alternative is the one closest to the engineer's balance (lowest balance RMS); without
an engineer's balance (ballad), the one with the lowest exact ``balance`` objective. Masking ratios
of a two-stem session are noisy: its equal-gain sum masks little (0.01-0.03 dB), so read the exact
scores in the JSON beside them.

Roles: a stem's role "in the song" (used to group roles and for the checks) is the designed one
(``backing_vocal``, ``bed``, ...); the role evomix gave it (read from ``front.json``) is reported
beside it. A backing vocal gets ``--role backing_vocals=backing_vocal`` when
``evomix.io.audio.ROLES`` has that role, else evomix's guess (``vocal`` up to commit af4f2d3).

Usage: python experiments/mix_quality.py [--songs rock,pop,...] [--seed 0] [--out DIR] [--keep]
       [--quick] [--label TEXT] [--blas-threads N]
To measure a given commit while the working tree holds other changes, run the script with
``PYTHONPATH`` pointing at a clean export of it (``git archive COMMIT | tar -x -C DIR``): evomix,
``python -m evomix`` and ``objectives`` are then imported from there.
``--quick`` runs a tiny search (population 16, 3 generations) to try the script; its figures mean
nothing. Readable lines per song, then the JSON object with every figure as the last line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import benchlib  # (first of the third-party imports: applies --blas-threads before numpy loads OpenBLAS)
import numpy as np
import pyloudnorm as pyln
import soundfile as sf
from scipy import signal

from evomix.choose.describe import DISTINCT_JND, distinct_rule, jnd_distance, jnd_matrix
from evomix.engine.analysis import analyze_session
from evomix.engine.render import ExactRender, features_from_render, render_exact
from evomix.io.audio import ROLES, guess_role, load_session
from evomix.search.genome import GeneTable
from evomix.testing import songs
from objectives import OBJECTIVE_NAMES, Target, evaluate, load_profile

SR = 44100
DURATION_S = 20.0
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "stems"
SHARED_SONGS = {"rock": "rock", "ballad": "acoustic"}  # song -> genre passed to evomix mix
RAW_LUFS_RANGE = (-26.0, -16.0)  # raw loudness of a synthesized stem file, drawn per stem (seeded)

# Synthesized songs. Per stem: (file name, role in the song, designed loudness relative to the mix
# in LU, recipe). The designed levels are a choice (see the module docstring); a recipe is
# ("arr", kind, variant): evomix.testing.songs.synth_stem; ("loop", voice): a loop voice played at
# 120 BPM; ("sum", {part: level LU}, width): arrangement parts at those levels relative to each
# other, summed into one stereo stem (a drum bus, a bed); "centre" makes a stem mono in both sides.
SYNTH_SONGS: dict[str, dict] = {
    "pop": {"genre": "pop", "seed": 2101, "stems": (
        ("lead_vocal.wav", "vocal", -5.0, ("arr", "vocal", 0)),
        ("backing_vocals.wav", "backing_vocal", -12.0, ("bv",)),
        ("drums.wav", "drums", -6.0, ("sum", {"kick": -4.0, "snare": -6.0, "hihat": -12.0})),
        ("bass.wav", "bass", -8.0, ("arr", "bass", 0, "centre")),
        ("keys.wav", "keys", -12.0, ("arr", "keys", 0)),
        ("guitar.wav", "guitar", -12.0, ("arr", "guitar", 0)),
    )},
    "edm": {"genre": "edm", "seed": 2202, "stems": (
        ("kick.wav", "kick", -5.0, ("arr", "kick", 2, "centre")),  # variant 2: four on the floor
        ("drums_top.wav", "drums", -11.0, ("sum", {"snare": -3.0, "hihat@1": -6.0})),  # hats variant 1: 16ths
        ("bass.wav", "bass", -7.0, ("loop", "saw_bass")),
        ("pads.wav", "pad", -14.0, ("loop", "saw_pad")),
        ("lead.wav", "lead", -11.0, ("loop", "saw_lead")),
        ("arp.wav", "synth", -15.0, ("arr", "arp", 0)),
        ("vocal.wav", "vocal", -6.0, ("loop", "formant_vocal")),
    )},
    "duo-vocal": {"genre": "pop", "seed": 2303, "stems": (
        ("instrumental.wav", "bed", -2.5,
         ("sum", {"kick": -6.0, "snare": -8.0, "hihat": -15.0, "bass": -7.0, "keys": -8.0})),
        ("lead_vocal.wav", "vocal", -3.5, ("arr", "vocal", 0)),
    )},
    "duo-guitar": {"genre": "rock", "seed": 2404, "stems": (
        ("band.wav", "bed", -2.0,
         ("sum", {"kick": -6.0, "snare": -8.0, "hihat": -15.0, "bass": -7.0, "guitar": -8.0})),
        ("lead_guitar.wav", "guitar", -4.5, ("arr", "lead", 0)),  # the arrangement's lead line as a lead guitar
    )},
}
ALL_SONGS = ("rock", "ballad", "pop", "edm", "duo-vocal", "duo-guitar")
BACKING_ROLE = "backing_vocal"
LEAD_RANGE_LU = (-12.0, 3.0)  # Must show: the lead relative to the bed
BED_PAN_MAX = 0.2  # Must show: the bed's pan
MUST = {"best_rms_db": 2.0, "first_rms_db": 3.0, "low_mean_db": 2.0}  # Must show, designed songs


# ------------------------------------------------------------------------------------------------
# Loudness (pyloudnorm)
# ------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _meter(sr: int) -> pyln.Meter:
    return pyln.Meter(sr)  # BS.1770-4: K-weighting, 400 ms blocks, absolute and relative gates


def lufs(x: np.ndarray, sr: int = SR) -> float:
    """Integrated loudness of ``x`` (channels, samples), LUFS (-inf for silence)."""
    x = np.asarray(x, dtype=np.float64)
    return float(_meter(sr).integrated_loudness(x.T if x.shape[0] > 1 else x[0]))


def relative_levels(stems: dict[str, np.ndarray], mix: np.ndarray, roles: dict[str, str]) -> dict:
    """Each stem's and each role's loudness relative to the mix, LU: {"mix_lufs", "stems", "roles"}."""
    m = lufs(mix)
    out = {"mix_lufs": m, "stems": {n: lufs(x) - m for n, x in stems.items()}, "roles": {}}
    for role in dict.fromkeys(roles[n] for n in stems):
        out["roles"][role] = lufs(sum(stems[n] for n in stems if roles[n] == role)) - m
    return out


def deviations(levels: dict, ref: dict | None) -> dict | None:
    """Per stem and per role, level minus the reference's (dB), and the balance RMS over stems."""
    if ref is None:
        return None
    ds = {n: levels["stems"][n] - ref["stems"][n] for n in ref["stems"]}
    dr = {r: levels["roles"][r] - ref["roles"][r] for r in ref["roles"]}
    return {"stems": ds, "roles": dr, "balance_rms_db": float(np.sqrt(np.mean(np.square(list(ds.values())))))}


# ------------------------------------------------------------------------------------------------
# Songs
# ------------------------------------------------------------------------------------------------

def read_stereo(path: Path) -> np.ndarray:
    """A file as float64 (channels, samples) at its own channel count."""
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    if sr != SR:
        raise SystemExit(f"{path}: {sr} Hz; this experiment expects {SR} Hz")
    return x.T


def _stereo(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x


def _part(spec: str, n: int, seed: int, i: int) -> np.ndarray:
    """An arrangement instrument ``kind`` or ``kind@variant``, (2, n) float64."""
    kind, _, variant = spec.partition("@")
    return songs.synth_stem(kind, n, np.random.default_rng([seed, i]), int(variant or 0), sr=SR)


def _at(x: np.ndarray, level_lufs: float) -> np.ndarray:
    return x * 10.0 ** ((level_lufs - lufs(x)) / 20.0)


def synth_recipe(recipe: tuple, n: int, seed: int, i: int) -> np.ndarray:
    """One synthesized stem, (2, n) float64, unnormalised."""
    if recipe[0] == "arr":
        x = songs.synth_stem(recipe[1], n, np.random.default_rng([seed, i]), recipe[2], sr=SR)
    elif recipe[0] == "loop":
        voice = getattr(songs, recipe[1])
        x = _stereo(voice(np.random.default_rng([seed, i]), SR, n, SR // 2))  # 120 BPM: a beat of 0.5 s
    elif recipe[0] == "sum":  # parts at their levels relative to each other (a bus / bed)
        x = sum(_at(_part(p, n, seed, 100 * i + k), -20.0 + lv) for k, (p, lv) in enumerate(recipe[1].items()))
    elif recipe[0] == "bv":  # backing vocals: two other vocal lines, one left-heavy and one right-heavy
        a = songs.synth_stem("vocal", n, np.random.default_rng([seed, i, 1]), 1, sr=SR)
        b = songs.synth_stem("vocal", n, np.random.default_rng([seed, i, 2]), 4, sr=SR)
        x = a * np.array([[1.0], [0.45]]) + b * np.array([[0.45], [1.0]])
    else:
        raise ValueError(recipe)
    if recipe[-1] == "centre":
        x = np.repeat(x.mean(axis=0, keepdims=True), 2, axis=0)
    return x


def write_synth_song(name: str, folder: Path) -> list[Path]:
    """Write a synthesized song's stems as 24-bit WAVs at spread raw loudness; return the paths."""
    spec = SYNTH_SONGS[name]
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(DURATION_S * SR))
    raw = np.random.default_rng([spec["seed"], 99])
    paths = []
    for i, (fname, _role, _level, recipe) in enumerate(spec["stems"]):
        x = _at(synth_recipe(recipe, n, spec["seed"], i), raw.uniform(*RAW_LUFS_RANGE))
        paths.append(songs.write_stem(folder / fname, x, SR))
    return paths


def synth_reference(name: str, folder: Path) -> dict:
    """The engineer's reference of a synthesized song: {"stems": {name: (2, n)}, "mix": (2, n)}."""
    stems = {}
    for fname, _role, level, _ in SYNTH_SONGS[name]["stems"]:
        stems[Path(fname).stem] = _at(_stereo(read_stereo(folder / fname)), TARGET_LUFS + level)
    mix = sum(stems.values())
    g = 10.0 ** ((TARGET_LUFS - lufs(mix)) / 20.0)
    return {"stems": {k: v * g for k, v in stems.items()}, "mix": mix * g}


def rock_reference(song_dir: Path) -> dict:
    """The shared rock's reference re-rendered from ``reference_params.json`` (EQ as given second-order
    sections, zero initial state; the equivalent total gain; constant-power pan, a mono stem feeding
    both sides), its stems and mix, and how far their sum is from ``reference_mix.flac``."""
    p = json.loads((song_dir / "reference_params.json").read_text())
    stems = {}
    for name, s in p["stems"].items():
        x = read_stereo(song_dir / "stems" / s["file"])
        sos = np.array([s["eq"][b]["sos"] for b in ("low_shelf", "peak", "high_shelf")])
        x = signal.sosfilt(sos, x, axis=-1) * 10.0 ** (p["equivalent_total_gain_db"][name] / 20.0)
        theta = (s["pan"] + 1.0) * np.pi / 4.0
        mono = x[0] if x.shape[0] == 1 else None
        stems[name] = (np.stack([mono * np.cos(theta), mono * np.sin(theta)]) if mono is not None
                       else x * np.array([[np.cos(theta)], [np.sin(theta)]]))
    mix = sum(stems.values())
    ref = read_stereo(song_dir / "reference_mix.flac")
    err = 20.0 * np.log10(np.sqrt(np.mean((mix - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))
    intended = {k: v["intended_level_lufs"] - p["sum_lufs_before_master"] for k, v in p["stems"].items()}
    return {"stems": stems, "mix": mix, "check_db_re_reference_mix": float(err), "intended_lu": intended}


# ------------------------------------------------------------------------------------------------
# evomix: the run, the equal-gain sum, objectives of a numpy render
# ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _cwd(folder: Path):
    here = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def cli_evomix_file(folder: Path) -> str:
    """The evomix package a ``python -m evomix`` started from ``folder`` imports."""
    with _cwd(folder):
        return subprocess.run([sys.executable, "-c", "import evomix; print(evomix.__file__)"], capture_output=True,
                              text=True, check=True).stdout.strip()


MIX_ARGS: tuple = ()  # --mix-args: extra flags for every evomix mix (ablations)


def run_mix(folder: Path, out: Path, genre: str, seed: int, roles: dict, quick: bool,
            mix_args: tuple = ()) -> dict:
    cmd = [sys.executable, "-m", "evomix", "mix", str(folder), "--out", str(out), "--genre", genre,
           "--seed", str(seed), "--export-stems", "--quiet", "--json", *mix_args]
    for k, v in roles.items():
        cmd += ["--role", f"{k}={v}"]
    if quick:
        cmd += ["--population", "16", "--generations", "3"]
    with _cwd(out.parent):  # not the repository: `python -m` puts the working folder first on sys.path
        run = benchlib.run_measured(cmd, timeout_s=1800.0)
    if run["returncode"] != 0:
        raise SystemExit(f"evomix mix failed on {folder}: {run['stderr'][-2000:]}")
    summary = json.loads(run["stdout"])
    return {"command": " ".join(cmd[1:]), "wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"],
            "generations": summary.get("generations"), "stop_reason": summary.get("stop_reason"),
            "evaluations": summary.get("evaluations"), "front_size": summary.get("front_size"),
            "timings_s": summary.get("timings_s"), "replaced_alternatives": summary.get("replaced_alternatives")}


def objective_scores(features, target: Target) -> dict:
    F = evaluate(features, target, OBJECTIVE_NAMES)[0]
    return {n: float(v) for n, v in zip(OBJECTIVE_NAMES, F)}


def equal_gain(session, analysis, target: Target) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Exact render of the neutral params with trim 0 (every stem at unity): its objective scores,
    its stems' contributions and its master."""
    table = GeneTable(session.n_stems)
    params = table.decode(table.neutral()[None], np.zeros(session.n_stems))
    r = render_exact(session, session.is_mono, session.sr, params, target_lufs=target.target_lufs,
                     ceiling_dbtp=target.ceiling_dbtp, keep_stems=True)
    scores = objective_scores(features_from_render(r, analysis.grid, analysis.roles), target)
    scores["true_peak_dbtp"] = float(r.true_peak_dbtp) if r.true_peak_dbtp is not None else None
    scores["limiter_gr_db"] = float(r.limiter_gr_db)
    return scores, dict(zip(session.names, r.stems)), r.mix


def reference_scores(ref: dict, session, analysis, target: Target) -> dict:
    """The objectives (evomix's) of the engineer's reference (a numpy render, no limiter)."""
    stems = np.stack([ref["stems"][n] for n in session.names])
    r = ExactRender(mix=ref["mix"], stems=stems, raw_loudness_lufs=lufs(ref["mix"]), normalise_db=0.0,
                    limiter_gr_db=0.0)
    features = features_from_render(r, analysis.grid, analysis.roles)
    scores = objective_scores(features, target)
    scores["true_peak_dbtp"] = float(features.true_peak_dbtp[0])
    return scores


# ------------------------------------------------------------------------------------------------
# One song
# ------------------------------------------------------------------------------------------------

def song_setup(name: str, work: Path) -> dict:
    """Stems folder, genre, song roles, designed levels and the engineer's reference of a song."""
    if name in SHARED_SONGS:
        song_dir = (SHARED / name).resolve()
        folder = song_dir / "stems"
        if not folder.is_dir():
            raise SystemExit(f"{folder}: missing (the shared stems live in ../shared/stems next to the repository)")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".flac")
        roles = {p.stem: guess_role(p.name) for p in files}
        ref = rock_reference(song_dir) if name == "rock" else None
        design = ref.pop("intended_lu") if ref else None
        return {"source": str(folder), "folder": folder, "genre": SHARED_SONGS[name], "roles": roles,
                "design_lu": design, "ref": ref, "overrides": {}}
    spec = SYNTH_SONGS[name]
    folder = work / "songs" / name
    write_synth_song(name, folder)
    roles = {Path(f).stem: role for f, role, _, _ in spec["stems"]}
    overrides = {}
    for stem, role in roles.items():
        if role == BACKING_ROLE and BACKING_ROLE in ROLES:
            overrides[stem] = BACKING_ROLE
    return {"source": f"synthesized (evomix.testing.songs, seed {spec['seed']})", "folder": folder,
            "genre": spec["genre"], "roles": roles, "design_lu": {Path(f).stem: lv for f, _, lv, _ in spec["stems"]},
            "ref": synth_reference(name, folder), "overrides": overrides}


def alternative_levels(out: Path, alt: str, names, roles: dict) -> tuple[dict, float, float | None]:
    """Each stem's level re the mix, the processed stems' (and the return's) sum error re the master,
    dB, and the reverb return's loudness re the master, LU (None: a dry mix, no return file)."""
    stems = {n: _stereo(read_stereo(out / f"{alt}-stems" / f"{n}.wav")) for n in names}
    mix = read_stereo(out / f"{alt}.wav")
    s = sum(stems.values())
    ret_path = out / f"{alt}-stems" / "reverb-return.wav"
    space = None
    if ret_path.exists():
        ret = read_stereo(ret_path)
        s = s + ret
        space = lufs(ret) - lufs(mix)
    err = 20.0 * np.log10(np.sqrt(np.mean((s - mix) ** 2)) / np.sqrt(np.mean(mix ** 2)))
    return relative_levels(stems, mix, roles), float(err), space


def low_end_role(roles: dict) -> str | None:
    vals = set(roles.values())
    return "kick" if "kick" in vals else ("drums" if "drums" in vals else None)


def measure_song(name: str, work: Path, seed: int, quick: bool) -> dict:
    t0 = time.perf_counter()
    s = song_setup(name, work)
    roles = s["roles"]
    out = work / "mixes" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    mix = run_mix(s["folder"], out, s["genre"], seed, s["overrides"], quick, MIX_ARGS)
    front = json.loads((out / "front.json").read_text())
    alts = sorted((m for m in front["members"] if "alternative" in m), key=lambda m: m["alternative"])
    names = [n for n in roles if n in front["stems"]] + [n for n in front["stems"] if n not in roles]
    evomix_roles = {n: front["stems"][n]["role"] for n in names}

    session = load_session([s["folder"]], roles=s["overrides"] or None)
    analysis = analyze_session(session)
    target = Target(profile=load_profile(s["genre"]), target_lufs=TARGET_LUFS, ceiling_dbtp=CEILING_DBTP)
    eq_scores, eq_stems, eq_mix = equal_gain(session, analysis, target)
    eq = relative_levels(eq_stems, eq_mix, roles)
    ref = None
    if s["ref"] is not None:
        ref = relative_levels(s["ref"]["stems"], s["ref"]["mix"], roles)
        ref["objectives"] = reference_scores(s["ref"], session, analysis, target)
        ref["objectives"]["masking_re_equal_gain"] = ref["objectives"]["masking"] / eq_scores["masking"]
        if "check_db_re_reference_mix" in s["ref"]:
            ref["check_db_re_reference_mix"] = s["ref"]["check_db_re_reference_mix"]
    eq["deviation"] = deviations(eq, ref)
    eq["objectives"] = eq_scores

    rows = []
    for m in alts:
        alt = m["alternative"]
        params = json.loads((out / f"{alt}.json").read_text())["params"]["stems"]
        lv, err, space = alternative_levels(out, alt, names, roles)
        lv["space_lu"] = space
        lv["deviation"] = deviations(lv, ref)
        lv.update({"name": alt, "labels": m.get("labels"), "exact": m["exact"], "descriptors": m.get("descriptors"),
                   "evomix_lufs": m.get("measured", {}).get("integrated_lufs"),
                   "stems_sum_error_db": err, "masking_re_equal_gain": _ratio(m["exact"].get("masking"),
                                                                                 eq_scores["masking"]),
                   "pan": {n: params[n]["pan"] for n in names}, "gain_db": {n: params[n]["gain_db"] for n in names}})
        rows.append(lv)

    fig = {"source": s["source"], "genre": s["genre"], "stems": names, "roles_song": roles,
           "roles_evomix": evomix_roles, "role_overrides": s["overrides"], "designed_lu": s["design_lu"],
           "mix": mix, "equal_gain": eq, "reference": ref, "alternatives": rows}
    fig["summary"] = summarise(fig, roles)
    fig["distinct"] = distinctness(alts)
    fig["time_s"] = time.perf_counter() - t0
    return fig


def _fmt(x, spec: str) -> str:
    """``x`` formatted, or "off" for an objective an ablation switched off (None)."""
    return "off" if x is None else format(x, spec)


def _ratio(a, b):
    """``a / b``, or None when ``a`` was not scored (an ablation switched the objective off)."""
    return None if a is None else a / b


def summarise(fig: dict, roles: dict) -> dict:
    rows, ref = fig["alternatives"], fig["reference"]
    out = {"masking_re_equal_gain": [r["masking_re_equal_gain"] for r in rows],
           "genre": [r["exact"].get("genre") for r in rows],
           "balance_objective": [r["exact"].get("balance") for r in rows]}
    if ref is not None:
        rms = [r["deviation"]["balance_rms_db"] for r in rows]
        best = int(np.argmin(rms))
        out.update({"balance_rms_db": rms, "alt01_balance_rms_db": rms[0], "best": rows[best]["name"],
                    "best_by": "balance RMS vs the engineer's", "best_balance_rms_db": rms[best],
                    "equal_gain_balance_rms_db": fig["equal_gain"]["deviation"]["balance_rms_db"]})
        for key, role in (("low_end", low_end_role(roles)), ("bass", "bass" if "bass" in roles.values() else None)):
            if role is None:
                continue
            d = [r["deviation"]["roles"][role] for r in rows]
            out[key] = {"role": role, "mean_db": float(np.mean(d)), "worst_db": d[int(np.argmax(np.abs(d)))],
                        "per_alt_db": d}
        out["roles_mean_deviation_db"] = {role: float(np.mean([r["deviation"]["roles"][role] for r in rows]))
                                          for role in ref["roles"]}
    else:
        best = int(np.argmin([np.inf if b is None else b for b in out["balance_objective"]]))
        out.update({"best": rows[best]["name"], "best_by": "lowest exact balance objective (no engineer's balance)"})
    out["best_genre_db"] = rows[best]["exact"].get("genre")  # None: an ablation switched it off
    out["best_masking_re_equal_gain"] = rows[best]["masking_re_equal_gain"]
    out["alt01_genre_db"] = rows[0]["exact"].get("genre")
    out["alt01_masking_re_equal_gain"] = rows[0]["masking_re_equal_gain"]
    out["min_masking_re_equal_gain"] = min((m for m in out["masking_re_equal_gain"] if m is not None), default=None)
    out["space_lu"] = [r.get("space_lu") for r in rows]  # the return re the master, LU; None: dry
    wet = [x for x in out["space_lu"] if x is not None]
    out["space_span_lu"] = (max(wet) - min(wet)) if wet else 0.0
    out["quietest_stem_lu"] = float(min(min(r["stems"].values()) for r in rows))
    lead = [n for n, r in roles.items() if r == "vocal"]
    bvs = [n for n, r in roles.items() if r == BACKING_ROLE]
    if lead and bvs:
        over = [max(r["stems"][b] for b in bvs) - max(r["stems"][v] for v in lead) for r in rows]
        out["backing_over_lead_lu"] = over
        out["backing_under_lead_all"] = all(o < 0 for o in over)
        out["alternatives_backing_over_lead"] = sum(o >= 0 for o in over)
    beds = [n for n, r in roles.items() if r == "bed"]
    if beds and len(roles) == 2:
        bed = beds[0]
        lead2 = next(n for n in roles if n != bed)
        pans = [r["pan"][bed] for r in rows]
        rel = [r["stems"][lead2] - r["stems"][bed] for r in rows]
        out["two_stem"] = {"bed": bed, "lead": lead2, "bed_pan": pans, "lead_pan": [r["pan"][lead2] for r in rows],
                           "lead_re_bed_lu": rel,
                           "designed_lead_re_bed_lu": (ref["stems"][lead2] - ref["stems"][bed]) if ref else None,
                           "bed_centred_all": all(abs(p) <= BED_PAN_MAX for p in pans),
                           "lead_in_range_all": all(LEAD_RANGE_LU[0] <= x <= LEAD_RANGE_LU[1] for x in rel)}
    return out


def distinctness(alts: list) -> dict:
    M = jnd_matrix([a["descriptors"] for a in alts])
    D = jnd_distance(M, M)
    pairs = [(i, j) for i in range(len(alts)) for j in range(i + 1, len(alts))]
    near = [(alts[i]["alternative"], alts[j]["alternative"], float(D[i, j]))
            for i, j in pairs if D[i, j] < DISTINCT_JND]
    same = [(alts[i]["alternative"], alts[j]["alternative"]) for i, j in pairs
            if sorted(alts[i].get("labels") or []) == sorted(alts[j].get("labels") or [])]
    return {"min_jnd_distance": float(min(D[i, j] for i, j in pairs)) if pairs else None,
            "near_identical_pairs": near, "pairwise_distinct": not near, "same_label_pairs": same}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------

def _f(x, fmt="+.1f") -> str:
    if isinstance(x, str):
        return x.rjust(6)
    return "   n/a" if x is None or not np.isfinite(x) else format(x, fmt).rjust(6)


def _row(label: str, role: str, cols, fmt: str = "+.1f") -> str:
    return f"{label[:14]:<14} {role[:22]:<22} " + "  ".join(_f(c, fmt) for c in cols)


def print_song(name: str, fig: dict) -> None:
    mix, sm, ref, eq = fig["mix"], fig["summary"], fig["reference"], fig["equal_gain"]
    rows = fig["alternatives"]
    err = max(r["stems_sum_error_db"] for r in rows)
    print(f"\n== {name}: {fig['source']}; genre {fig['genre']}; evomix mix {mix['wall_s']:.1f} s, "
          f"{mix['generations']} generations ({mix['stop_reason']}), front {mix['front_size']}; "
          f"exported stems sum to the master within {err:.0f} dB ==")
    cols = ["design", "engin.", "eq-sum"] + [r["name"] for r in rows]
    print(f"{'loudness re mix':<14} {'role (evomix)':<22} " + "  ".join(c.rjust(6) for c in cols) + "   LU")
    roles_evomix = fig["roles_evomix"]
    for n in fig["stems"]:
        role = fig["roles_song"][n] + ("" if roles_evomix[n] == fig["roles_song"][n] else f" ({roles_evomix[n]})")
        print(_row(n, role, [(fig["designed_lu"] or {}).get(n), ref["stems"][n] if ref else None, eq["stems"][n]]
                   + [r["stems"][n] for r in rows]))
    roles = list(dict.fromkeys(fig["roles_song"].values()))
    if len(roles) < len(fig["stems"]):
        for role in roles:
            print(_row(f"role {role}", "", [None, ref["roles"][role] if ref else None, eq["roles"][role]]
                       + [r["roles"][role] for r in rows]))
    if ref is not None:
        print(f"{'deviation from the engineer':<37} " + "  ".join(c.rjust(6) for c in cols) + "   dB")
        for n in fig["stems"]:
            print(_row(n, "", ["", "", eq["deviation"]["stems"][n]] + [r["deviation"]["stems"][n] for r in rows]))
        print(_row("balance RMS", "", ["", "", sm["equal_gain_balance_rms_db"]] + sm["balance_rms_db"], ".1f"))
        print(f"balance RMS vs the engineer's: alt-01 {sm['alt01_balance_rms_db']:.1f} dB, best {sm['best']} "
              f"{sm['best_balance_rms_db']:.1f} dB (equal-gain sum {sm['equal_gain_balance_rms_db']:.1f} dB)")
        for key in ("low_end", "bass"):
            if key in sm:
                d = sm[key]
                print(f"{d['role']} vs the engineer's over the 5: mean {d['mean_db']:+.1f} dB, "
                      f"worst {d['worst_db']:+.1f} dB")
        md = ", ".join(f"{k} {v:+.1f}" for k, v in sm["roles_mean_deviation_db"].items())
        print(f"mean deviation over the 5 by role, dB: {md}")
        if "check_db_re_reference_mix" in ref:
            print(f"(the reference re-rendered from reference_params.json is {ref['check_db_re_reference_mix']:.0f} dB "
                  f"from reference_mix.flac)")
    if "backing_over_lead_lu" in sm:
        o = ", ".join(f"{x:+.1f}" for x in sm["backing_over_lead_lu"])
        print(f"backing vocal re lead, LU: {o} -> {sm['alternatives_backing_over_lead']} of {len(rows)} "
              f"with the backing vocal at or over the lead")
    if "two_stem" in sm:
        t = sm["two_stem"]
        print(f"two-stem: bed pan {', '.join(f'{p:+.2f}' for p in t['bed_pan'])} (all within ±{BED_PAN_MAX}: "
              f"{t['bed_centred_all']}); lead pan {', '.join(f'{p:+.2f}' for p in t['lead_pan'])}")
        print(f"          lead re bed {', '.join(f'{x:+.1f}' for x in t['lead_re_bed_lu'])} LU "
              f"(designed {t['designed_lead_re_bed_lu']:+.1f}; all in [{LEAD_RANGE_LU[0]:g}, {LEAD_RANGE_LU[1]:+g}]: "
              f"{t['lead_in_range_all']})")
    o = eq["objectives"]
    m = ", ".join(_fmt(x, ".2f") for x in sm["masking_re_equal_gain"])
    print(f"masking re equal-gain sum ({o['masking']:.3f} dB): {m}"
          + (f"; engineer's reference {ref['objectives']['masking_re_equal_gain']:.2f}" if ref else ""))
    print(f"genre distance: best ({sm['best']}) {_fmt(sm['best_genre_db'], '.2f')} dB, "
          f"alt-01 {_fmt(sm['alt01_genre_db'], '.2f')} dB, "
          f"equal-gain sum {o['genre']:.2f} dB"
          + (f", engineer's reference {ref['objectives']['genre']:.2f} dB" if ref else ""))
    b = ", ".join(_fmt(x, ".2f") for x in sm["balance_objective"])
    print(f"balance objective (exact): alternatives {b}; equal-gain sum {o['balance']:.2f}"
          + (f"; engineer's reference {ref['objectives']['balance']:.2f}" if ref else ""))
    sp = ", ".join("dry" if r.get("space_lu") is None else f"{r['space_lu']:+.1f}" for r in rows)
    prof = load_profile(fig["genre"])
    print(f"reverb return re the master, LU (pyloudnorm): {sp}; span {sm['space_span_lu']:.1f} LU; genre's range "
          f"{list(prof.space_lu) if prof.space_lu else 'none'}; quietest stem re the mix "
          f"{sm['quietest_stem_lu']:+.1f} LU")
    d = fig["distinct"]
    print(f"distinct ({DISTINCT_JND:g} JND rule): min pairwise distance {d['min_jnd_distance']:.2f} JND, "
          f"near-identical pairs {len(d['near_identical_pairs'])}, same-label pairs {len(d['same_label_pairs'])}")


def must_show(figs: dict) -> dict:
    """The issues' Must-show targets, each song: True when met."""
    out = {}
    for name, f in figs.items():
        sm, c = f["summary"], {}
        c["masking_20pct_below_equal_gain"] = min(x for x in sm["masking_re_equal_gain"] if x is not None) <= 0.8
        c["every_stem_over_-20lu"] = sm["quietest_stem_lu"] >= -20.0
        prof = load_profile(f["genre"])
        if prof.space_lu is not None and f["source"].startswith("synth"):  # dry stems
            c["space_span_6lu"] = sm["space_span_lu"] >= 6.0
            c["space_in_genre_range"] = all(s is not None and prof.space_lu[0] - 0.5 <= s <= prof.space_lu[1] + 0.5
                                            for s in sm["space_lu"])
        if f["reference"] is not None and name not in ("duo-vocal", "duo-guitar"):
            c["best_within_2db"] = sm["best_balance_rms_db"] <= MUST["best_rms_db"]
            c["first_within_3db"] = sm["alt01_balance_rms_db"] <= MUST["first_rms_db"]
            for key in ("low_end", "bass"):
                if key in sm:
                    c[f"{sm[key]['role']}_mean_within_2db"] = abs(sm[key]["mean_db"]) <= MUST["low_mean_db"]
        if "backing_under_lead_all" in sm:
            c["backing_under_lead_all"] = sm["backing_under_lead_all"]
        if "two_stem" in sm:
            c["bed_centred_all"] = sm["two_stem"]["bed_centred_all"]
            c["lead_in_range_all"] = sm["two_stem"]["lead_in_range_all"]
            c["pairwise_distinct"] = f["distinct"]["pairwise_distinct"]
        out[name] = c
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", default=",".join(ALL_SONGS), help=f"comma list of {', '.join(ALL_SONGS)}")
    ap.add_argument("--seed", type=int, default=0, help="evomix mix --seed (the songs are fixed)")
    ap.add_argument("--mix-args", default="", help="more flags for every evomix mix, e.g. '--weights masking=0' "
                                                   "(an ablation); recorded in the JSON")
    ap.add_argument("--out", type=Path, default=None, help="work folder (kept); default a temporary one")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--quick", action="store_true",
                    help="tiny search (population 16, 3 generations): to try the script")
    ap.add_argument("--label", default="", help="a label for this run (e.g. 'before'), printed and in the JSON")
    ap.add_argument("--blas-threads", type=int, default=None, help="OPENBLAS/OMP/MKL_NUM_THREADS (see benchlib)")
    args = ap.parse_args()
    global MIX_ARGS
    MIX_ARGS = tuple(shlex.split(args.mix_args))
    chosen = [s.strip() for s in args.songs.split(",") if s.strip()]
    bad = [s for s in chosen if s not in ALL_SONGS]
    if bad:
        ap.error(f"--songs: unknown {bad[0]!r}; choose from {', '.join(ALL_SONGS)}")
    keep = args.out if args.out is not None else (Path(tempfile.mkdtemp(prefix="evomix-mixq-")) if args.keep else None)
    t0 = time.perf_counter()
    env = benchlib.environment()
    figs = {}
    with benchlib.work_folder("evomix-mixq-", keep) as work:
        work = work.resolve()
        env["evomix_file_cli"] = cli_evomix_file(work)
        code = (f"commit {env['code']['commit']}, modified files {env['code']['modified_files'] or 'none'}"
                if env["code"]["commit"] else "not a git checkout")
        print(f"mix_quality{f' [{args.label}]' if args.label else ''}: evomix from "
              f"{Path(env['evomix_file']).parent.parent} ({code}; `python -m evomix` imports "
              f"{Path(env['evomix_file_cli']).parent.parent}); songs {', '.join(chosen)}; evomix mix defaults"
              f"{' (QUICK: population 16, 3 generations)' if args.quick else ''}, --seed {args.seed}, "
              f"--export-stems; meter pyloudnorm (BS.1770-4); work folder {work}"
              f"{'' if keep else ' (removed at the end)'}")
        for name in chosen:
            figs[name] = measure_song(name, work, args.seed, args.quick)
            print_song(name, figs[name])
    checks = must_show(figs)
    print("\nMust show (issues 21 and 22), True = met:")
    for name, c in checks.items():
        line = ", ".join(f"{k} {v}" for k, v in c.items()) or "(nothing to check: no designed balance)"
        print(f"  {name:<11} {line}")
    wall = time.perf_counter() - t0
    per_song = ", ".join(f"{n} {f['time_s']:.0f} s" for n, f in figs.items())
    print(f"runtime {wall:.0f} s ({per_song})")
    result = {"experiment": "mix_quality", "issue": [21, 22], "meter": "pyloudnorm (ITU-R BS.1770-4)",
              "settings": {"label": args.label, "seed": args.seed, "quick": args.quick, "songs": chosen,
                           "mix_args": list(MIX_ARGS),
                           "target_lufs": TARGET_LUFS, "ceiling_dbtp": CEILING_DBTP, "duration_s_synth": DURATION_S,
                           "distinct_rule": distinct_rule(), "backing_vocal_role_available": BACKING_ROLE in ROLES},
              "environment": env, "songs": figs, "must_show": checks, "runtime_s": wall}
    return benchlib.report(result)


if __name__ == "__main__":
    sys.exit(main())
