"""The listening report's files (issue 13): before.wav, report-data.json, run.json, report.html,
``evomix report DIR`` and ``evomix analyze --plot`` (the page in a browser: test_report_browser.py)."""
import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from deap import tools

from evomix.core.meter import integrated_loudness, true_peak_dbtp
from evomix.output.report_data import generation_records
from evomix.settings import Search
from tests.support import run_cli, search_flags, small_search

ARGS = [*search_flags(small_search(generations=3, alternatives=3, seed=4)), "--quiet"]


@pytest.fixture(scope="module")
def mixed(stem_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "out"
    res = run_cli("mix", stem_dir, "--out", out, *ARGS)
    assert res.exit_code == 0, res.output
    return out, res.stdout


def _lufs(path):
    x, sr = sf.read(path, always_2d=True)
    return integrated_loudness(x.T, sr), true_peak_dbtp(x.T, sr)


@pytest.mark.slow
def test_mix_writes_the_report_files_and_prints_the_report_path(mixed):
    out, stdout = mixed
    for name in ("before.wav", "report-data.json", "run.json", "report.html", "front.json"):
        assert (out / name).is_file(), name
    assert f"report: {out / 'report.html'}" in stdout.replace("\n", "")
    assert not list(out.glob(".*tmp*"))  # written atomically: no temporary left behind


@pytest.mark.slow
def test_before_is_loudness_matched_to_the_alternatives_and_under_the_ceiling(mixed):
    out, _ = mixed
    front = json.loads((out / "front.json").read_text())
    before_lufs, before_tp = _lufs(out / "before.wav")
    for wav in sorted(out.glob("alt-*.wav")):
        lufs, _ = _lufs(wav)
        assert abs(before_lufs - lufs) <= 0.5, (wav.name, before_lufs, lufs)
    assert before_tp <= front["ceiling_dbtp"] + 0.1, before_tp


@pytest.mark.slow
def test_before_is_the_equal_gain_sum_of_the_raw_stems(mixed, stem_dir):
    out, _ = mixed
    before, _ = sf.read(out / "before.wav", always_2d=True)
    total = None
    for p in sorted(stem_dir.glob("*.wav")):
        x, _ = sf.read(p, always_2d=True)
        x = np.repeat(x, 2, axis=1) / np.sqrt(2.0) if x.shape[1] == 1 else x  # mono: constant-power centre
        total = x if total is None else total + x
    corr = np.corrcoef(before.ravel(), total.ravel())[0, 1]
    assert corr > 0.99, corr  # a gain (and the limiter's few dB at most) away from the plain sum


@pytest.mark.slow
def test_run_json_records_the_run(mixed):
    out, _ = mixed
    run = json.loads((out / "run.json").read_text())
    assert run["format"] == "evomix-run/1" and run["evomix_version"]
    assert isinstance(run["command"], list)  # the CLI's sys.argv
    assert run["seed"] == 4 and run["settings"]["population"] == 8 and run["settings"]["generations"] == 3
    assert {"load", "analysis", "search", "render", "write"} <= set(run["timings_s"])
    assert all(v > 0 for v in run["timings_s"].values()), run["timings_s"]  # every phase does some work
    gens = run["generations"]
    assert [g["gen"] for g in gens] == [0, 1, 2, 3]
    for g in gens:
        assert g["front_size"] >= 1 and set(g["best"]) == set(run["objectives"])
    for n in run["objectives"]:  # best-so-far of an elitist search never gets worse
        assert gens[-1]["best"][n] <= gens[0]["best"][n] + 1e-9


@pytest.mark.slow
def test_run_json_of_an_api_call_records_its_arguments(stem_dir, tmp_path):
    from evomix import api

    search = Search(population=np.int64(4), generations=0, alternatives=1, seed=9)  # numpy ints are fine
    res = api.mix([stem_dir], search=search)
    res.write(tmp_path / "o")
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["command"]["api"] == "evomix.mix"
    assert run["command"]["arguments"]["seed"] == 9 and run["command"]["arguments"]["population"] == 4


def test_generation_records_unweight_the_logbook_and_carry_a_hypervolume():
    lb = tools.Logbook()
    lb.record(gen=0, evals=8, front=3, min=np.array([2.0, 1.0]))
    lb.record(gen=1, evals=8, front=4, min=np.array([1.0, 0.5]), hypervolume=0.7)
    recs = generation_records(lb, ("masking", "genre"), {"masking": 2.0, "genre": 0.5})
    assert recs[0] == {"gen": 0, "evaluations": 8, "front_size": 3, "best": {"masking": 1.0, "genre": 2.0}}
    assert recs[1]["hypervolume"] == 0.7 and "hypervolume" not in recs[0]
    recs = generation_records(lb, ("masking", "genre"), {"masking": 2.0, "genre": 0.5}, hypervolumes=[0.25, 0.5])
    assert [r["hypervolume"] for r in recs] == [0.25, 0.7]  # the logbook's own value first


@pytest.mark.slow
def test_report_data_holds_spectra_and_masking_for_every_mix(mixed):
    out, _ = mixed
    d = json.loads((out / "report-data.json").read_text())
    n_bands, n_stems = len(d["bands_hz"]), len(d["stems"])
    assert len(d["genre_target_db"]) == n_bands
    assert sorted(d["alternatives"]) == ["alt-01", "alt-02", "alt-03"]
    for s in [d["before"], *d["alternatives"].values()]:
        assert len(s["spectrum_db"]) == n_bands and len(s["masking_by_band_db"]) == n_bands
        M = np.array(s["masking_matrix_db"])
        assert M.shape == (n_stems, n_stems) and np.all(np.diag(M) == 0) and np.all(M >= 0)
        # rows sum to each stem's masking
        np.testing.assert_allclose(M.sum(axis=1), s["masking_per_stem_db"], atol=0.01)
        assert abs(s["plr_db"] - (s["true_peak_dbtp"] - s["integrated_lufs"])) < 0.01
    alt = json.loads((out / "alt-01.json").read_text())
    assert abs(d["alternatives"]["alt-01"]["integrated_lufs"] - alt["target_lufs"]) <= 0.1


@pytest.mark.slow
def test_report_is_self_contained(mixed):
    out, _ = mixed
    page = (out / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a network
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"(?!data:)", page)  # script and styles inline
    for k in ("before", "alt-01", "alt-02", "alt-03"):
        wav = "before.wav" if k == "before" else f"{k}.wav"
        assert f'data-mix="{k}" preload="auto" src="{wav}"' in page
    assert page.count("<svg") >= 1 + 2 * 3 + 1  # front, spectrum + masking per alternative, convergence
    assert page.count('class="settings"') == 3


@pytest.mark.slow
def test_report_command_rebuilds_it_from_the_folder_and_shows_labels_and_descriptors(mixed, tmp_path):
    out, _ = mixed
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "report.html").unlink()
    alt = json.loads((copy / "alt-02.json").read_text())
    alt["labels"] = ["warm", "vocal forward"]
    alt["descriptors"] = {"brightness": 0.31, "punch": {"value": 0.8, "unit": "0-1"}}
    (copy / "alt-02.json").write_text(json.dumps(alt))
    res = run_cli("report", copy)
    assert res.exit_code == 0, res.output
    assert str(copy / "report.html") in res.stdout.replace("\n", "")
    page = (copy / "report.html").read_text()
    assert "vocal forward" in page and "brightness" in page and "punch" in page


@pytest.mark.slow
def test_report_of_a_folder_without_report_data_or_run_json(mixed, tmp_path):
    out, _ = mixed
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    for name in ("report-data.json", "run.json", "report.html", "before.wav"):
        (copy / name).unlink()
    res = run_cli("report", copy)
    assert res.exit_code == 0, res.output
    page = (copy / "report.html").read_text()
    assert page.count('class="mix-player"') == 3 and page.count('class="settings"') == 3
    assert "-14.0" in page  # loudness measured from the files instead


def test_report_command_refuses_a_folder_without_front_json(tmp_path):
    res = run_cli("report", tmp_path)
    assert res.exit_code == 1
    assert "front.json" in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_analyze_table_and_spectrum_plot(mixed, tmp_path):
    out, _ = mixed
    png = tmp_path / "spec.png"
    res = run_cli("analyze", out / "alt-01.wav", "--genre", "rock", "--plot", png)
    assert res.exit_code == 0, res.output
    assert "integrated loudness" in res.stdout and "LUFS" in res.stdout and "distance to rock" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = run_cli("analyze", out / "alt-01.wav", "--plot", tmp_path / "x.jpg")
    assert res.exit_code == 1 and "--plot" in res.output


@pytest.mark.slow
def test_report_links_other_exports_of_an_alternative(mixed, tmp_path):
    out, _ = mixed
    copy = tmp_path / "exports"
    shutil.copytree(out, copy)
    (copy / "alt-01.dawproject").write_bytes(b"PK")
    (copy / "stems" / "alt-01").mkdir(parents=True)
    res = run_cli("report", copy)
    assert res.exit_code == 0, res.output
    page = (copy / "report.html").read_text()
    assert 'href="alt-01.dawproject"' in page and 'href="stems/alt-01"' in page
    assert 'href="alt-01.wav"' not in page  # its own audio is in the player, not in the list


@pytest.mark.slow
def test_open_hands_the_report_to_the_default_browser(mixed, monkeypatch):
    out, _ = mixed
    opened = []
    monkeypatch.setattr("evomix.output.report.webbrowser.open", lambda url: opened.append(url) or True)
    res = run_cli("report", out, "--open")
    assert res.exit_code == 0, res.output
    assert opened == [(out / "report.html").resolve().as_uri()]
    monkeypatch.setattr("evomix.output.report.webbrowser.open", lambda url: False)  # no browser: a warning, exit 0
    res = run_cli("report", out, "--open")
    assert res.exit_code == 0 and "no browser" in res.output


@pytest.mark.parametrize("n_obj", [1, 2])
def test_front_plot_with_one_or_two_objectives(n_obj):
    from evomix.output.report import front_scatter_svg

    names = ["masking", "genre"][:n_obj]
    members = [{"objectives": {n: float(i + k) for k, n in enumerate(names)}} for i in range(5)]
    members[2]["alternative"] = "alt-01"
    svg = front_scatter_svg({"objectives": names, "units": {n: "dB" for n in names}, "members": members})
    assert svg.startswith("<svg") and "1 exported" in svg
    assert front_scatter_svg({"objectives": names, "members": []}) is None


def test_before_stem_powers_from_the_analysis_are_the_measured_ones(stem_session, stem_analysis):
    """The before's per-stem band powers (for its masking plots) come from the analysis: they are
    what measuring the centre-panned raw stems gives, and the sum is the plain sum."""
    from evomix.output.report_data import before_strips

    session, analysis = stem_session, stem_analysis
    fast = before_strips(session, analysis.grid, analysis=analysis)
    measured = before_strips(session, analysis.grid)
    np.testing.assert_array_equal(fast.stem_power, measured.stem_power)
    np.testing.assert_array_equal(fast.mix, measured.mix)
    centre = np.where(session.is_mono, np.sqrt(0.5), 1.0)
    plain = sum(session.audio[s].astype(np.float64) * centre[s] for s in range(session.n_stems))
    np.testing.assert_allclose(fast.mix, plain, rtol=1e-12, atol=1e-12)


def test_each_card_says_how_wet_the_mix_is():
    """The report's space line (issue 22): the return's level re the mix, its decay and pre-delay,
    the sends that are on (loudest first); a mix with every send off says it is dry."""
    from evomix.output.report import space_text

    params = {"stems": {"vocal": {"reverb_send_db": -14.0}, "keys": {"reverb_send_db": -20.0},
                        "bass": {"reverb_send_db": -40.0}, "drums": {"reverb_send_db": -39.8}},
              "master": {"reverb": {"decay_s": 1.62, "predelay_ms": 24.0, "damping": 0.5}}}
    text = space_text(params, {"space_lu": -12.34})
    assert text == "reverb return -12.3 LU re the mix (decay 1.6 s, pre-delay 24 ms); sends: vocal -14 dB, keys -20 dB"
    dry = {"stems": {n: {"reverb_send_db": -40.0} for n in ("vocal", "keys")}}
    assert space_text(dry, {"space_lu": -40.0}) == "dry: every reverb send off"
    assert space_text({"stems": {"vocal": {"gain_db": 0.0}}}, None) == ""  # a file from before the bus
