"""The listening report: one self-contained ``report.html`` per output folder.

The page works offline and from a copied folder: the audio is referenced by relative path
(``alt-NN.wav``, ``before.wav`` beside it), every plot is an inline SVG (matplotlib), the script
and styles are inline, and nothing is fetched from a network. Everything it shows is read from the
folder (``front.json``, ``alt-NN.json``, and when present ``run.json`` and ``report-data.json``),
so :func:`write_report` rebuilds it for an existing folder (``evomix report DIR``).

What it holds:

* one transport over a player per alternative and one for the "before" (the equal-gain sum of the
  raw stems at the alternatives' loudness, ``evomix.output.report_data.render_before``): switching keeps
  the playback position (A/B at the same point of the song), keys 1-9 select an alternative,
  0 or b the before, space plays / pauses;
* per alternative: its labels and listener descriptors when the folder has them (optional keys
  ``labels`` and ``descriptors`` of ``alt-NN.json`` or of its ``front.json`` member), loudness (LUFS,
  BS.1770-4), LRA (LU, EBU Tech 3342), true peak (dBTP), PLR (dB), its objective values, and a
  table of every per-stem and master setting;
* plots: the front as a scatter matrix of the objectives (exported alternatives marked); each
  alternative's long-term spectrum against the genre target and the before; the stem-by-stem
  masking matrix before and after, and the masking profile over frequency (``objectives.masking``);
  the search's convergence (best value of each objective per generation, and the hypervolume
  when the logbook has one).
"""
from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import tempfile
import webbrowser
from pathlib import Path

import numpy as np

from evomix import __version__
from evomix.core.runtime import available_cores
from evomix.engine.bands import band_grid
from evomix.errors import OptionError, ParameterError
from evomix.io.audio import read_audio, write_audio
from evomix.io.files import write_text_atomic
from evomix.io.spill import materialise
from evomix.output import report_data as rd
from evomix.progress import NULL_REPORTER
from evomix.search.genome import REVERB_SEND_OFF_DB
from evomix.tools.measure import measure_file
from evomix.tools.profile import features_from_audio
from objectives.genre import profile_on_bands
from objectives.spectrum import long_term_spectrum_db, normalise_level

REPORT_NAME = "report.html"
BEFORE_NAME = "before.wav"
DATA_NAME = "report-data.json"
RUN_NAME = "run.json"
ALT_RE = re.compile(r"^alt-(\d+)\.json$")
OBJECTIVE_DIRECTION = "lower is better"


# --------------------------------------------------------------------------- the folder

def _read_json(path: Path, *, required: bool = False):
    if not path.exists():
        if required:
            raise ParameterError(f"{path.parent}: no {path.name}; is this an 'evomix mix' output folder?")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParameterError(f"{path}: not readable JSON ({e})") from None


def load_folder(out: str | Path) -> dict:
    """Read what the report shows from an output folder.

    Returns {"front": dict, "alternatives": [alt-NN.json dicts, in order], "run": dict or None,
    "data": dict or None}. Raises ParameterError when ``out`` is not a folder or has no front.json.
    """
    out = Path(out)
    if not out.is_dir():
        raise ParameterError(f"{out}: not a folder")
    front = _read_json(out / "front.json", required=True)
    alts = []
    for p in sorted(out.iterdir(), key=lambda p: p.name):
        if ALT_RE.match(p.name):
            d = _read_json(p)
            if isinstance(d, dict) and "params" in d:
                d.setdefault("name", p.stem)
                alts.append(d)
    return {"front": front, "alternatives": alts, "run": _read_json(out / RUN_NAME),
            "data": _read_json(out / DATA_NAME)}


# --------------------------------------------------------------------------- plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "evomix", "font.size": 8,
                         "axes.titlesize": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


_SVG_COUNT = [0]
FREQ_TICKS_HZ = (50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _freq_axis(ax, f) -> None:
    """A log frequency axis with a few labelled ticks and no minor ticks (cheap to draw)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ax.set_xlim(max(20.0, float(np.min(f))), min(20000.0, float(np.max(f))))
    ax.xaxis.set_major_locator(FixedLocator(FREQ_TICKS_HZ))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t // 1000}k" if t >= 1000 else str(t) for t in FREQ_TICKS_HZ])
    ax.set_xlabel("frequency (Hz)")


def _svg(fig) -> str:
    """The figure as an inline <svg> element, its ids made unique on the page."""
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")  # fixed margins (no tight bbox: one draw per figure)
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    _SVG_COUNT[0] += 1
    p = f"f{_SVG_COUNT[0]}-"
    text = re.sub(r'id="', f'id="{p}', text)
    text = text.replace("url(#", f"url(#{p}").replace('href="#', f'href="#{p}')
    return text


def front_scatter_svg(front: dict) -> str | None:
    """Scatter matrix of the front's objectives (fast-tier values, lower is better), its lower
    triangle and the histograms on the diagonal; the exported alternatives are marked and named."""
    names = list(front.get("objectives", []))
    members = front.get("members", [])
    if not names or not members:
        return None
    plt = _pyplot()
    units = front.get("units", {})
    F = np.array([[m["objectives"].get(n, np.nan) for n in names] for m in members], dtype=float)  # (members, obj)
    alt = [m.get("alternative") for m in members]
    is_alt = np.array([a is not None for a in alt])
    n = len(names)
    size = 2.1 if n > 1 else 3.0
    fig, axes = plt.subplots(n, n, figsize=(size * n + (2 if n == 1 else 0), size * n), squeeze=False)
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:  # the upper triangle mirrors the lower one: left out (a third less to draw)
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(F[:, i], bins=min(12, max(3, len(F))), color="#9db4d0")
                for k in np.flatnonzero(is_alt):
                    ax.axvline(F[k, i], color="#c0392b", lw=1)
                ax.set_title(f"{names[i]} ({units.get(names[i], '')})")
            else:
                ax.scatter(F[~is_alt, j], F[~is_alt, i], s=10, color="#5b7fa8", label="front", rasterized=True)
                ax.scatter(F[is_alt, j], F[is_alt, i], s=28, color="#c0392b", marker="D", label="exported")
                for k in np.flatnonzero(is_alt):
                    ax.annotate(alt[k].replace("alt-", ""), (F[k, j], F[k, i]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
            if i == n - 1:
                ax.set_xlabel(f"{names[j]} ({units.get(names[j], '')})")
            if j == 0:
                ax.set_ylabel("members" if i == j else f"{names[i]} ({units.get(names[i], '')})")
    if n > 1:
        handles, labels = axes[1, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.98, 1 - 0.5 / fig.get_figheight()), fontsize=8)
    fig.suptitle(f"Pareto front: {len(members)} members, {int(is_alt.sum())} exported (red), {OBJECTIVE_DIRECTION}")
    fig.subplots_adjust(left=0.6 / fig.get_figwidth() + 0.04, right=0.98, bottom=0.5 / fig.get_figheight() + 0.03,
                        top=1 - 0.45 / fig.get_figheight(), wspace=0.35, hspace=0.4)
    return _svg(fig)


def spectrum_svg(bands_hz, curves: list[tuple[str, list, dict]], title: str) -> str:
    """Long-term spectra (level-normalised 1/3-octave-equivalent levels, dB) on a log frequency axis;
    ``curves`` are (label, levels (B,), matplotlib style)."""
    plt = _pyplot()
    f = np.asarray(bands_hz, dtype=float)
    fig, ax = plt.subplots(figsize=(6.0, 2.8))
    for label, y, style in curves:
        ax.plot(f, np.asarray(y, dtype=float), label=label, **style)
    _freq_axis(ax, f)
    ax.set_ylabel("level (dB, mean 40 Hz-16 kHz = 0)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.16, top=0.9)
    return _svg(fig)


def masking_svg(stems: list, before: dict | None, after: dict, bands_hz, name: str) -> str:
    """Where in frequency masking happens (dB per band), before and after, as an inline SVG; then
    who masks whom before and after as two heat-map tables (:func:`masking_table_html`: rows the
    masked stem, columns the masker, dB of the row stem's masking), drawn in HTML rather than
    matplotlib (a 16 x 16 matrix with its labels cost ~0.3 s per alternative to draw as SVG)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.8))
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.18, top=0.88)
    f = np.asarray(bands_hz, dtype=float)
    if before:
        ax.plot(f, before["masking_by_band_db"], color="#888888", lw=1.2, label="before")
    ax.plot(f, after["masking_by_band_db"], color="#c0392b", lw=1.5, label=name)
    _freq_axis(ax, f)
    ax.set_ylabel("masking (dB)")
    ax.set_title("where masking happens")
    ax.legend(fontsize=7)
    mats = [("before", before), (name, after)] if before else [(name, after)]
    vmax = max(float(np.max(np.asarray(d["masking_matrix_db"]))) for _, d in mats) or 1.0
    tables = "".join(masking_table_html(stems, np.asarray(d["masking_matrix_db"], dtype=float), vmax, label)
                     for label, d in mats)
    return _svg(fig) + f'<div class="masking-tables">{tables}</div>'


def masking_table_html(stems: list, M: np.ndarray, vmax: float, label: str) -> str:
    """A masking matrix (stems x stems, dB) as a heat-map table: darker is more masking, the value in
    each cell's title (hover)."""
    def cell(v: float) -> str:
        t = min(max(v / vmax, 0.0), 1.0) if vmax > 0 else 0.0
        r, g, b = (int(255 + (c - 255) * t) for c in (110, 20, 60))  # white -> dark red
        return (f'<td style="background:rgb({r},{g},{b})" title="{v:.3f} dB"></td>')

    head = "".join(f'<th class="masker"><span>{_e(n)}</span></th>' for n in stems)
    rows = "".join(f"<tr><th>{_e(n)}</th>{''.join(cell(float(v)) for v in M[i])}</tr>" for i, n in enumerate(stems))
    return (f'<table class="heat"><caption>{_e(label)}: total {float(np.sum(M)):.2f} dB '
            f'(rows masked by columns)</caption><tr><th></th>{head}</tr>{rows}</table>')


def convergence_svg(generations: list, names: list, units: dict) -> str | None:
    """Best value of each objective in the population per generation (unweighted, lower is better),
    the front size, and the hypervolume when recorded."""
    gens = [g for g in generations if "best" in g]
    if not gens:
        return None
    plt = _pyplot()
    x = [g["gen"] for g in gens]
    hv = [g.get("hypervolume") for g in gens]
    has_hv = any(v is not None for v in hv)
    panels = len(names) + 1 + int(has_hv)
    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    axes = axes.ravel()
    for k, n in enumerate(names):
        axes[k].plot(x, [g["best"].get(n, np.nan) for g in gens], color="#2e6da4", lw=1.5)
        axes[k].set_title(f"best {n} ({units.get(n, '')})")
    k = len(names)
    axes[k].plot(x, [g.get("front_size", 0) for g in gens], color="#555555", lw=1.5)
    axes[k].set_title("front size")
    if has_hv:
        k += 1
        axes[k].plot([xi for xi, v in zip(x, hv) if v is not None], [v for v in hv if v is not None],
                     color="#27ae60", lw=1.5)
        axes[k].set_title("hypervolume (higher is better)")
    for ax in axes[: k + 1]:
        ax.set_xlabel("generation")
    for ax in axes[k + 1:]:
        ax.set_visible(False)
    fig.suptitle("convergence of the search")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12 if rows > 1 else 0.2, top=0.86 if rows > 1 else 0.78,
                        wspace=0.3, hspace=0.6)
    return _svg(fig)


# --------------------------------------------------------------------------- html pieces

def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(v, fmt: str = "{:.2f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool):
        return fmt.format(float(v))
    return _e(v)


def _table(header: list, rows: list, cls: str = "") -> str:
    h = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _labels_html(labels) -> str:
    if not labels:
        return ""
    if isinstance(labels, str):
        labels = [labels]
    if isinstance(labels, dict):
        labels = [f"{k}: {v}" for k, v in labels.items()]
    return '<div class="labels">' + "".join(f'<span class="chip">{_e(x)}</span>' for x in labels) + "</div>"


def space_text(params: dict, desc) -> str:
    """How wet a mix is, in words: ``"reverb return -12.3 LU re the mix (decay 1.6 s, pre-delay 20 ms);
    sends: vocal -14 dB, keys -16 dB"``, ``"dry: every reverb send off"``, or "" for a params dict
    without the bus (an older file). ``desc``: the mix's listener descriptors (``space_lu``)."""
    stems = (params or {}).get("stems") or {}
    sends = {n: v.get("reverb_send_db") for n, v in stems.items() if isinstance(v, dict)}
    if not sends or all(x is None for x in sends.values()):
        return ""
    on = {n: x for n, x in sends.items() if x is not None and round(x) > REVERB_SEND_OFF_DB}  # "-40 dB" reads as off
    if not on:
        return "dry: every reverb send off"
    rev = ((params or {}).get("master") or {}).get("reverb") or {}
    level = (desc or {}).get("space_lu") if isinstance(desc, dict) else None
    head = f"reverb return {level:+.1f} LU re the mix" if isinstance(level, (int, float)) else "reverb return"
    setting = ", ".join(x for x in (f"decay {rev['decay_s']:.1f} s" if "decay_s" in rev else "",
                                     f"pre-delay {rev['predelay_ms']:.0f} ms" if "predelay_ms" in rev else "") if x)
    loudest = sorted(on.items(), key=lambda kv: -kv[1])
    return (f"{head}{f' ({setting})' if setting else ''}; sends: "
            + ", ".join(f"{n} {x:+.0f} dB" for n, x in loudest))


def _space_html(params: dict, desc) -> str:
    text = space_text(params, desc)
    return f'<p class="space"><b>Space</b>: {_e(text)}</p>' if text else ""


def _descriptors_html(desc) -> str:
    """Listener descriptors, whatever their shape: {name: value}, {name: {value, ...}} or a list."""
    if not desc:
        return ""
    rows = []
    if isinstance(desc, dict):
        items = desc.items()
    elif isinstance(desc, list):
        items = [((d.get("name") or d.get("descriptor") or str(i)) if isinstance(d, dict) else str(i), d)
                 for i, d in enumerate(desc)]
    else:
        return f"<p>{_e(desc)}</p>"
    for k, v in items:
        if isinstance(v, dict):
            val = v.get("value", v.get("score"))
            extra = ", ".join(f"{a}: {b}" for a, b in v.items() if a not in ("value", "score", "name", "descriptor"))
            rows.append([_e(k), _num(val), _e(extra)])
        else:
            rows.append([_e(k), _num(v), ""])
    return "<h4>Listener descriptors</h4>" + _table(["descriptor", "value", "notes"], rows, "small")


SETTING_COLUMNS = [
    ("role", lambda s: s.get("role", "")), ("trim dB", lambda s: s.get("trim_db")),
    ("fader dB", lambda s: s.get("gain_db")), ("pan", lambda s: s.get("pan")),
    ("HPF Hz", lambda s: s["eq"].get("highpass_hz")), ("low shelf Hz", lambda s: s["eq"].get("low_shelf_hz")),
    ("low shelf dB", lambda s: s["eq"].get("low_shelf_db")), ("peak Hz", lambda s: s["eq"].get("peak_hz")),
    ("peak dB", lambda s: s["eq"].get("peak_db")), ("peak Q", lambda s: s["eq"].get("peak_q")),
    ("high shelf Hz", lambda s: s["eq"].get("high_shelf_hz")),
    ("high shelf dB", lambda s: s["eq"].get("high_shelf_db")),
    ("comp thr dB", lambda s: s["comp"].get("threshold_db")), ("ratio", lambda s: s["comp"].get("ratio")),
    ("attack ms", lambda s: s["comp"].get("attack_ms")), ("release ms", lambda s: s["comp"].get("release_ms")),
    ("knee dB", lambda s: s["comp"].get("knee_db")),
]


def _fmt_setting(v) -> str:
    if isinstance(v, str):
        return _e(v)
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}"


def settings_html(params: dict) -> str:
    """Every per-stem setting (one row per stem, in signal-flow order) and the master chain."""
    rows = []
    for name, s in params.get("stems", {}).items():
        try:
            rows.append([_e(name)] + [_fmt_setting(get(s)) for _, get in SETTING_COLUMNS])
        except (KeyError, TypeError):
            rows.append([_e(name)] + ["-"] * len(SETTING_COLUMNS))
    stem_t = _table(["stem"] + [c for c, _ in SETTING_COLUMNS], rows, "settings")
    m = params.get("master", {})
    mrows = [[_e(f"{part} {k}"), _fmt_setting(v)] for part in ("eq", "comp") for k, v in (m.get(part) or {}).items()]
    return (f"<h4>Per-stem settings</h4>{stem_t}<p class='note'>Signal flow per stem: trim, high-pass, low shelf, "
            f"peak, high shelf, compressor, fader, pan.</p><h4>Master</h4>"
            f"{_table(['setting', 'value'], mrows, 'small')}"
            f"<p class='note'>Master: shelves, compressor, loudness normalisation to the target, "
            f"true-peak limiter.</p>")


AUDITION_SUFFIXES = {".wav", ".json"}


def alternative_files(folder: Path, name: str) -> list[Path]:
    """Other things exported for an alternative (processed stems, DAW sessions, ...): every file or
    folder in ``folder`` or one level below whose name starts with ``name`` (``alt-01``), except its
    own ``.wav`` and ``.json``; relative to ``folder``, sorted."""
    out = []
    for p in sorted(folder.glob(f"{name}*")) + sorted(folder.glob(f"*/{name}*")):
        if p.parent == folder and p.suffix.lower() in AUDITION_SUFFIXES and p.stem == name:
            continue
        if p.name.startswith((f"{name}.", f"{name}-", f"{name}_", f"{name}/")) or p.name == name or p.stem == name:
            out.append(p.relative_to(folder))
    return out


def _files_html(folder: Path, name: str) -> str:
    files = alternative_files(folder, name)
    if not files:
        return ""
    items = "".join(f'<li><a href="{_e(p.as_posix())}">{_e(p.as_posix())}'
                    f'{"/" if (folder / p).is_dir() else ""}</a></li>' for p in files)
    return f"<h4>Files</h4><ul class='files'>{items}</ul>"


def _measured(name: str, data: dict | None, folder: Path) -> dict | None:
    """Loudness figures of a mix: from report-data.json, else measured from its file."""
    d = None
    if data:
        d = data.get("before") if name == "before" else data.get("alternatives", {}).get(name)
    if d:
        return d
    path = folder / (BEFORE_NAME if name == "before" else f"{name}.wav")
    if not path.exists():
        return None

    try:
        m = measure_file(path)
    except Exception:  # a damaged file: the report still shows the rest
        return None
    return {"integrated_lufs": m["integrated_lufs"], "loudness_range_lu": m["loudness_range_lu"],
            "true_peak_dbtp": m["true_peak_dbtp"], "plr_db": m["plr_db"]}


def _loudness_rows(meas: dict | None) -> list:
    if not meas:
        return [["-", "-", "-", "-"]]
    return [[_num(meas.get("integrated_lufs"), "{:.1f}"), _num(meas.get("loudness_range_lu"), "{:.1f}"),
             _num(meas.get("true_peak_dbtp")), _num(meas.get("plr_db"), "{:.1f}")]]


LOUDNESS_HEADER = ["loudness (LUFS)", "LRA (LU)", "true peak (dBTP)", "PLR (dB)"]


def _fmt_time(s) -> str:
    return f"{float(s):.2f} s" if s is not None else "-"


# --------------------------------------------------------------------------- the page

def build_html(folder: str | Path) -> str:
    """The report page for an output folder (see the module docstring)."""
    folder = Path(folder)
    d = load_folder(folder)
    front, alts, run, data = d["front"], d["alternatives"], d["run"], d["data"]
    names = list(front.get("objectives", []))
    units = front.get("units", {})
    members_by_alt = {m["alternative"]: m for m in front.get("members", []) if m.get("alternative")}
    has_before = (folder / BEFORE_NAME).exists()
    mixes = (["before"] if has_before else []) + [a["name"] for a in alts]

    # players and transport
    players = "".join(
        f'<audio class="mix-player" id="player-{_e(k)}" data-mix="{_e(k)}" preload="auto" '
        f'src="{_e(BEFORE_NAME if k == "before" else k + ".wav")}"></audio>' for k in mixes)
    buttons = "".join(
        f'<button class="choice" data-mix="{_e(k)}" title="key {"0 or b" if k == "before" else i}">'
        f'<kbd>{"0" if k == "before" else i}</kbd> {_e(k)}</button>'
        for i, k in enumerate(mixes, start=0 if has_before else 1))

    # overview table
    head = ["mix", "labels"] + LOUDNESS_HEADER + [f"{n} ({units.get(n, '')})" for n in names]
    rows = []
    for k in mixes:
        alt = next((a for a in alts if a["name"] == k), None)
        member = members_by_alt.get(k, {})
        labels = (alt or {}).get("labels") or member.get("labels")
        scores = ((alt or {}).get("exact") or (alt or {}).get("objectives") or {}) if alt else {}
        rows.append([f'<a href="#card-{_e(k)}">{_e(k)}</a>',
                     _labels_html(labels) or ("equal-gain sum of the raw stems" if k == "before" else "")]
                    + _loudness_rows(_measured(k, data, folder))[0]
                    + [_num(scores.get(n)) if alt else "-" for n in names])
    overview = _table(head, rows, "overview")

    # plots
    front_plot = front_scatter_svg(front)
    conv_plot = convergence_svg(run.get("generations", []), names, units) if run else None
    bands = data.get("bands_hz") if data else None
    target_curve = data.get("genre_target_db") if data else None
    before_sum = data.get("before") if data else None
    stems = data.get("stems", []) if data else []

    cards = []
    if has_before:
        cards.append(
            f'<section class="card" id="card-before"><h3>before '
            f'<button class="choice small" data-mix="before">listen</button></h3>'
            f"<p>The plain equal-gain sum of the raw stems (unity faders, centre pan, no EQ or compression), "
            f"normalised to the alternatives' loudness and true-peak limited to the same ceiling, so that the "
            f"A/B compares mixes, not levels.</p>"
            f"{_table(LOUDNESS_HEADER, _loudness_rows(_measured('before', data, folder)))}</section>")
    for a in alts:
        k = a["name"]
        member = members_by_alt.get(k, {})
        labels = a.get("labels") or member.get("labels")
        desc = a.get("descriptors") or member.get("descriptors")
        obj_rows = [[_e(n), _e(units.get(n, "")), _num((a.get("objectives") or {}).get(n), "{:.3f}"),
                     _num((a.get("exact") or {}).get(n), "{:.3f}")] for n in names]
        summ = (data or {}).get("alternatives", {}).get(k)
        plots = ""
        if bands and summ:
            curves = [(f"{front.get('genre', 'genre')} target", target_curve,
                       {"color": "#27ae60", "ls": "--", "lw": 1.5})]
            if before_sum:
                curves.append(("before", before_sum["spectrum_db"], {"color": "#999999", "lw": 1.0}))
            curves.append((k, summ["spectrum_db"], {"color": "#c0392b", "lw": 1.6}))
            title = f"{k}: long-term spectrum against the {front.get('genre', '')} target"
            plots += f'<div class="plot spectrum">{spectrum_svg(bands, curves, title)}</div>'
            if stems and "masking_matrix_db" in summ:
                plots += f'<div class="plot masking">{masking_svg(stems, before_sum, summ, bands, k)}</div>'
        cards.append(
            f'<section class="card" id="card-{_e(k)}"><h3>{_e(k)} '
            f'<button class="choice small" data-mix="{_e(k)}">listen</button></h3>'
            f"{_labels_html(labels)}{_space_html(a.get('params', {}), desc)}{_descriptors_html(desc)}"
            f"<h4>Loudness</h4>{_table(LOUDNESS_HEADER, _loudness_rows(_measured(k, data, folder)))}"
            f"<h4>Objectives ({OBJECTIVE_DIRECTION})</h4>"
            f"{_table(['objective', 'unit', 'fast tier', 'exact render'], obj_rows, 'small')}"
            f"{plots}{settings_html(a.get('params', {}))}{_files_html(folder, k)}</section>")

    # run
    run_html = ""
    if run:
        cmd = run.get("command")
        cmd_txt = " ".join(map(str, cmd)) if isinstance(cmd, list) else json.dumps(cmd)
        t_rows = [[_e(k), _fmt_time(v)] for k, v in (run.get("timings_s") or {}).items()]
        run_html = (f"<p>evomix {_e(run.get('evomix_version', ''))}, seed {_e(run.get('seed', ''))}: "
                    f"<code>{_e(cmd_txt)}</code></p>"
                    f"{_table(['phase', 'wall time'], t_rows, 'small')}")
    settings = front.get("settings", {})
    stems_rows = [[_e(n), _e(s.get("role", "")), _e(Path(str(s.get("file", ""))).name)]
                  for n, s in front.get("stems", {}).items()]

    keymap = {str(i): k for i, k in enumerate(mixes, start=0 if has_before else 1) if k != "before" and i <= 9}
    script = _SCRIPT.replace("__KEYMAP__", json.dumps(keymap)).replace(
        "__FIRST__", json.dumps(mixes[1] if has_before and len(mixes) > 1 else (mixes[0] if mixes else "")))
    title = f"evomix report: {folder.resolve().name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_STYLE}</style></head>
<body>
<header><h1>{_e(title)}</h1>
<p>{len(alts)} alternatives of {len(front.get('stems', {}))} stems, genre <b>{_e(front.get('genre', ''))}</b>,
target {_num(front.get('target_lufs'), '{:.1f}')} LUFS, ceiling {_num(front.get('ceiling_dbtp'), '{:.1f}')} dBTP;
front of {len(front.get('members', []))} from {_e(settings.get('evaluations', '?'))} candidates
({_e(settings.get('population', '?'))} x {_e(settings.get('generations', '?'))} generations, \
seed {_e(settings.get('seed', '?'))}).</p></header>
<div id="transport">
<button id="playpause" title="space">&#9654; play</button>
<span id="now">-</span> <span id="clock">0:00.0 / 0:00.0</span>
<input type="range" id="seek" min="0" max="1000" value="0" step="1" aria-label="position">
<div id="choices">{buttons}</div>
<p class="note">Keys: 1-9 select an alternative, 0 or b the before, space play / pause. \
Switching keeps the position in the song; every mix is at the same loudness.</p>
<span id="status"></span>
</div>
{players}
<main>
<section><h2>All mixes</h2>{overview}</section>
{f'<section><h2>The front</h2><div class="plot front">{front_plot}</div></section>' if front_plot else ''}
<section><h2>Alternatives</h2>{''.join(cards)}</section>
{f'<section><h2>Convergence</h2><div class="plot convergence">{conv_plot}</div></section>' if conv_plot else ''}
<section><h2>Stems</h2>{_table(['stem', 'role', 'file'], stems_rows, 'small')}</section>
{f'<section><h2>Run</h2>{run_html}</section>' if run_html else ''}
</main>
<footer>Made by evomix {_e(__version__)}. Loudness ITU-R BS.1770-4, LRA EBU Tech 3342, \
true peak BS.1770-4 Annex 2.</footer>
<script>{script}</script>
</body></html>
"""


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header,main,footer{padding:0 1.2em}
h1{font-size:1.4em}h2{border-bottom:1px solid #ccc;margin-top:1.5em}
#transport{position:sticky;top:0;background:#263238;color:#eee;padding:.6em 1.2em;z-index:10}
#transport button{font-size:1em;margin:.15em;padding:.3em .7em;border-radius:4px;border:1px solid #777;\
background:#37474f;color:#eee;cursor:pointer}
#transport button.active{background:#c0392b;border-color:#e74c3c}
#seek{width:50%;vertical-align:middle}
#now{font-weight:bold;margin:0 .6em}
kbd{font-family:monospace;background:#555;border-radius:3px;padding:0 .3em}
table{border-collapse:collapse;margin:.4em 0;font-size:.85em;background:#fff}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
table.overview td:nth-child(2),table.overview th:nth-child(2){text-align:left}
.card{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0;background:#fff}
.card button.small{font-size:.75em;padding:.1em .6em;cursor:pointer}
.chip{display:inline-block;background:#e3ecf7;border-radius:10px;padding:.1em .7em;margin:.1em;font-size:.85em}
.plot svg{max-width:100%;height:auto}
.masking-tables{display:flex;gap:1em;flex-wrap:wrap}
table.heat td{width:12px;height:12px;padding:0;border:1px solid #fff}
table.heat th{font-size:9px;font-weight:normal;text-align:right;padding:0 3px}
table.heat th.masker{height:60px;vertical-align:bottom}
table.heat th.masker span{writing-mode:vertical-rl;transform:rotate(180deg)}
table.heat caption{font-size:10px;text-align:left}
.note{font-size:.8em;color:#666}
#transport .note{color:#bbb}
footer{font-size:.8em;color:#777;padding-bottom:2em}
"""

_SCRIPT = """
(function () {
  "use strict";
  const players = {};
  document.querySelectorAll("audio.mix-player").forEach(function (a) { players[a.dataset.mix] = a; });
  const keymap = __KEYMAP__;
  let current = players[__FIRST__] || Object.values(players)[0] || null;
  const seek = document.getElementById("seek"), clock = document.getElementById("clock");
  const now = document.getElementById("now"), playBtn = document.getElementById("playpause");
  const status = document.getElementById("status");
  function fmt(t) { if (!isFinite(t)) t = 0; const m = Math.floor(t / 60), s = t - 60 * m; \
return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1); }
  function draw() {
    if (!current) return;
    const d = current.duration;
    clock.textContent = fmt(current.currentTime) + " / " + fmt(d);
    if (isFinite(d) && d > 0 && document.activeElement !== seek) \
seek.value = Math.round(1000 * current.currentTime / d);
    now.textContent = current.dataset.mix;
    playBtn.innerHTML = current.paused ? "&#9654; play" : "&#10074;&#10074; pause";
    document.querySelectorAll("button.choice").forEach(function (b) { \
b.classList.toggle("active", b.dataset.mix === current.dataset.mix); });
  }
  function play(a) {
    const p = a.play();
    if (p && p.catch) p.catch(function (e) { status.textContent = "playback refused: " + e.message; draw(); });
  }
  function select(key) {
    const next = players[key];
    if (!next || next === current) { draw(); return; }
    const t = current ? current.currentTime : 0, playing = current ? !current.paused : false;
    if (current) current.pause();
    const go = function () {
      next.currentTime = isFinite(next.duration) ? Math.min(t, next.duration) : t;
      if (playing) play(next);
      draw();
    };
    current = next;
    if (next.readyState >= 1) go(); else next.addEventListener("loadedmetadata", go, { once: true });
    draw();
  }
  function toggle() { if (!current) return; if (current.paused) play(current); else current.pause(); draw(); }
  // buttons give the focus back, so that space never both "clicks" a focused button and toggles
  document.querySelectorAll("button.choice").forEach(function (b) { \
b.addEventListener("click", function () { select(b.dataset.mix); b.blur(); }); });
  playBtn.addEventListener("click", function () { toggle(); playBtn.blur(); });
  seek.addEventListener("input", function () {
    if (current && isFinite(current.duration)) current.currentTime = seek.value / 1000 * current.duration; draw();
  });
  Object.values(players).forEach(function (a) {
    ["timeupdate", "play", "pause", "loadedmetadata", "ended"].forEach(function (ev) { \
a.addEventListener(ev, function () { if (a === current) draw(); }); });
    a.addEventListener("error", function () { status.textContent = "cannot load " + a.getAttribute("src"); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" && e.target.type !== "range" || tag === "TEXTAREA") return;
    if (e.key === " ") { e.preventDefault(); toggle(); }
    else if (e.key === "0" || e.key === "b" || e.key === "B") select("before");
    else if (keymap[e.key]) select(keymap[e.key]);
  });
  window.evomixReport = { select: select, toggle: toggle, players: players, \
current: function () { return current ? current.dataset.mix : null; } };
  draw();
})();
"""


def write_report(folder: str | Path) -> Path:
    """(Re)build ``report.html`` in an output folder from the files in it; written atomically."""
    folder = Path(folder)
    text = build_html(folder)
    return write_text_atomic(folder / REPORT_NAME, text)


def write_mix_report(result, out: str | Path, *, reporter=None, command=None) -> list[Path]:
    """After ``MixResult.write``: ``before.wav``, ``report-data.json``, ``run.json`` and ``report.html``.

    ``result`` is an ``evomix.output.result.MixResult`` whose exported members carry ``measured["report"]``
    (:func:`evomix.output.report_data.features_summary` of their exact render); ``command`` is the
    command line (``sys.argv``) or None for the API call recorded on the result.
    """
    out = Path(out)
    reporter = NULL_REPORTER if reporter is None else reporter
    session, target = result.session, result.target
    written = []
    with reporter.phase("report", total=2, unit="files") as ph:
        grid = band_grid(session.sr)
        threads = available_cores()
        src = getattr(result, "before_from", None)  # a folder whose before.wav fits (evomix rank)
        src_data = _read_json(Path(src) / DATA_NAME) if src is not None else None
        if getattr(result, "before", None) is not None:  # rendered with the alternatives (evomix.api.mix)
            before, before_summary = result.before
        elif src_data and src_data.get("before") and (Path(src) / BEFORE_NAME).is_file():
            before, before_summary = None, src_data["before"]
            if (Path(src) / BEFORE_NAME).resolve() != (out / BEFORE_NAME).resolve():
                written.append(_copy_atomic(Path(src) / BEFORE_NAME, out / BEFORE_NAME))
        else:
            before, before_summary = rd.render_before(session, grid, target_lufs=target.target_lufs,
                                                      ceiling_dbtp=target.ceiling_dbtp, threads=threads)
        if before is not None:
            written.append(write_audio(out / BEFORE_NAME, materialise(before.mix).astype(np.float32, copy=False),
                                          session.sr, subtype="PCM_24"))
        del before
        ph.advance()
        alts = {f"alt-{i + 1:02d}": (m.measured or {}).get("report") for i, m in enumerate(result.alternatives)}
        data = rd.report_data(grid, target.profile, session.names, session.roles, before_summary, alts)
        written.append(write_text_atomic(out / DATA_NAME, json.dumps(data)))
        ph.advance()
    if command is None:
        command = getattr(result, "call", None) or {"api": "evomix.mix"}
    run = rd.run_record(
        command=command, seed=result.settings.get("seed", 0), settings=result.settings,
        timings_s=getattr(reporter, "timings_s", {}),
        generations=(rd.generation_records(result.search.logbook, result.names, result.weights,
                                           hypervolumes=getattr(result.search, "hypervolume", None))
                     if result.search is not None  # a re-ranked front: the search of the run it came from
                     else ((_read_json(Path(src) / RUN_NAME) or {}).get("generations", []) if src is not None else [])),
        genre=result.genre, objectives=result.names, weights=result.weights, target_lufs=target.target_lufs,
        ceiling_dbtp=target.ceiling_dbtp,
        stems={n: {"file": str(p), "role": r} for n, p, r in zip(session.names, session.paths, session.roles)})
    written.append(write_text_atomic(out / RUN_NAME, json.dumps(run, indent=1, default=_json_default)))
    written.append(write_report(out))
    return written


def _copy_atomic(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` through a temporary name in ``dst``'s folder (renamed when complete)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def _json_default(v):
    """Numpy scalars and arrays, paths: as JSON numbers, lists and strings."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def open_report(path: str | Path) -> bool:
    """Open ``path`` in the default browser (``webbrowser``); False when no browser could be started."""
    return bool(webbrowser.open(Path(path).resolve().as_uri()))


# --------------------------------------------------------------------------- evomix analyze --plot

def file_spectrum_db(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A file's long-term spectrum as the ``genre`` objective sees it: band centres (B,) Hz and
    level-normalised 1/3-octave-equivalent levels (B,) dB (mean over 40 Hz-16 kHz removed)."""
    x, sr = read_audio(Path(path))
    feats = features_from_audio(x, sr)
    return feats.bands_hz, normalise_level(long_term_spectrum_db(feats), feats.bands_hz)[0]


def write_spectrum_plot(paths, profile, out: str | Path) -> Path:
    """Draw the long-term spectrum of each file in ``paths`` against ``profile`` (a GenreProfile)
    into the PNG ``out`` (written to a temporary name, then renamed)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise OptionError(lambda k: f"{k('plot')}: {out} must be a .png file")
    if not out.parent.is_dir():
        raise OptionError(lambda k: f"{k('plot')}: folder {out.parent} does not exist")
    curves, bands = [], None
    colours = ["#c0392b", "#2e6da4", "#8e44ad", "#d35400", "#16a085", "#7f8c8d"]
    for k, p in enumerate(paths):
        bands, spec = file_spectrum_db(p)
        curves.append((Path(p).name, spec, {"color": colours[k % len(colours)], "lw": 1.6}))
    curves.insert(0, (f"{profile.name} target", profile_on_bands(profile, bands),
                      {"color": "#27ae60", "ls": "--", "lw": 1.5}))
    plt = _pyplot()
    f = np.asarray(bands, dtype=float)
    fig, ax = plt.subplots(figsize=(7.0, 3.5))
    for label, y, style in curves:
        ax.plot(f, y, label=label, **style)
    _freq_axis(ax, f)
    ax.set_ylabel("level (dB, mean 40 Hz-16 kHz = 0)")
    ax.set_title(f"long-term spectrum against the {profile.name} profile")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, out)
    except OSError as e:
        why = e.strerror or str(e)
        raise OptionError(lambda k: f"{k('plot')}: cannot write {out} ({why})") from None
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return out
