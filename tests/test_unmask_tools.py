"""Dynamic unmasking (issue 22, item 2) in ``evomix vary``, ``rank`` and ``explore``: a saved mix's cut
keeps its key and threshold when it is varied or re-ranked, and an exploration attaches the keys as
``evomix mix`` does (``pipeline.searched_constraints`` / ``pipeline.read_back_keys``).

The song is the tests' 3 s synthetic one (``tests.support.song_stems``: drums, bass, keys, vocal; the
vocal keys the keys by role). The run locks the keys' cut (depth, band and Q), so every mix it makes,
and every variation of one, has the same threshold: the vocal's loud level in that band.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import evomix.api as api
from evomix.io.audio import read_audio
from evomix.search.constraints import Constraints
from evomix.tools.explore import explore
from evomix.tools.rank import rank, write_ranked
from evomix.tools.vary import vary
from tests.support import run_cli, small_search, song_stems, write_stems

pytestmark = pytest.mark.slow  # each test reads a finished run, or varies, ranks or explores one

RUN_WEIGHTS = "genre=0"  # so that ranking with the genre is an objective the run did not score
CUT_LOCKS = ["keys.unmask_depth_db=9", "keys.unmask_hz=1500", "keys.unmask_q=1"]


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory):
    """A finished run whose keys' cut is locked on (the vocal keys it by role): (folder, stem paths)."""
    folder = tmp_path_factory.mktemp("unmask-tools")
    paths = write_stems(folder / "stems", song_stems(duration_s=3.0))
    result = api.mix(paths, search=small_search(population=16, generations=6, seed=7, alternatives=2),
                     weights=RUN_WEIGHTS, constraints=Constraints.parse(CUT_LOCKS, ["keys.unmask_attack_ms=2:50"]))
    result.write(folder / "run")
    return folder, paths


def _cut(params: dict) -> dict:
    return params["stems"]["keys"]


def _render(d: dict, params: dict, paths, tmp_path, name: str) -> np.ndarray:
    """``evomix render`` of the saved mix ``d`` (an alt-NN.json) with its ``params`` replaced by ``params``."""
    src = tmp_path / f"{name}.json"
    src.write_text(json.dumps(dict(d, params=params)))
    return read_audio(api.render(src, paths, tmp_path / f"{name}.wav"))[0]


def test_the_run_saved_its_cut(cut_run):
    folder, _ = cut_run
    d = json.loads((folder / "run" / "alt-01.json").read_text())
    cut = _cut(d["params"])
    assert cut["unmask_key"] == "vocal" and cut["unmask_depth_db"] == 9.0 and cut["unmask_hz"] == 1500.0
    assert np.isfinite(cut["unmask_threshold_db"]) and cut["unmask_threshold_db"] != 0.0


def test_vary_keeps_the_cut_s_key_and_threshold_and_renders_it(cut_run, tmp_path):
    folder, paths = cut_run
    parent = json.loads((folder / "run" / "alt-01.json").read_text())
    out = tmp_path / "v"
    res = vary([folder / "run" / "alt-01.json"], paths, spread=0.4, n=2, seed=1, out=out)
    assert res.alternatives, res.warnings
    files = sorted(out.glob("alt-*.json"))
    assert len(files) == len(res.alternatives)
    for f in files:
        d = json.loads(f.read_text())
        cut, saved = _cut(d["params"]), _cut(parent["params"])
        assert cut["unmask_key"] == "vocal" and cut["unmask_depth_db"] == 9.0 and cut["unmask_hz"] == 1500.0
        # the same band on the same key: the parent's threshold (the analysis is deterministic)
        assert cut["unmask_threshold_db"] == pytest.approx(saved["unmask_threshold_db"], abs=1e-9)
        assert d["params"]["stems"]["drums"] != parent["params"]["stems"]["drums"]  # a variation, not the parent
        assert d["constraints"]["keys"] == {"keys": "vocal"}  # the key recorded with the constraints
    # the variation renders with its cut: `evomix render` of its file gives its wav; without the cut, another mix
    d = json.loads(files[0].read_text())
    wav = read_audio(out / f"{files[0].stem}.wav")[0]
    again = _render(d, d["params"], paths, tmp_path, "again")
    assert np.abs(again - wav).max() <= 1e-6  # one 24-bit LSB is 1.2e-7
    dry = json.loads(json.dumps(d["params"]))
    _cut(dry)["unmask_depth_db"] = 0.0
    without = _render(d, dry, paths, tmp_path, "dry")
    assert np.sqrt(np.mean((without - wav) ** 2)) > 1e-3 * np.sqrt(np.mean(wav ** 2))  # the cut is audible in it


def test_vary_with_a_key_given_now_uses_it(cut_run, tmp_path):
    folder, paths = cut_run
    res = vary([folder / "run" / "alt-01.json"], paths, spread=0.4, n=1, seed=2,
               constraints=Constraints().with_keys(["keys=drums"]))
    assert res.alternatives, res.warnings
    cut = _cut(res.alternatives[0].params)
    assert cut["unmask_key"] == "drums" and cut["unmask_depth_db"] == 9.0
    saved = _cut(json.loads((folder / "run" / "alt-01.json").read_text())["params"])
    assert cut["unmask_threshold_db"] != pytest.approx(saved["unmask_threshold_db"], abs=0.1)  # the drums' level
    assert res.settings["constraints"]["keys"] == {"keys": "drums"}


def test_rank_with_the_run_s_weights_reuses_its_cut_renders_bit_for_bit(cut_run, tmp_path):
    folder, _ = cut_run
    res = rank(folder / "run", weights=RUN_WEIGHTS)
    write_ranked(res, tmp_path / "same", in_place=False)
    assert res.settings["new_renders"] == 0 and res.settings["reused_renders"] == len(res.alternatives) > 0
    for p in sorted((folder / "run").glob("alt-*.wav")):
        assert (tmp_path / "same" / p.name).read_bytes() == p.read_bytes()
        assert _cut(json.loads((tmp_path / "same" / f"{p.stem}.json").read_text())["params"])["unmask_key"] == "vocal"


def test_rank_with_a_new_objective_decodes_the_cut_with_its_key(cut_run, tmp_path):
    """An objective the run did not score: the saved genomes are decoded and scored again, with the run's keys."""
    folder, _ = cut_run
    saved = {json.dumps(m["genome"]): _cut(m["params"])
             for m in json.loads((folder / "run" / "front.json").read_text())["members"]}
    res = rank(folder / "run", weights="genre=1", alternatives=1)
    assert not res.settings["rank_used_saved_scores"]
    for m in res.front:
        cut = _cut(m.params)
        assert cut["unmask_key"] == "vocal" and cut["unmask_depth_db"] == 9.0
        before = saved[json.dumps(np.asarray(m.genome).tolist())]
        assert cut["unmask_threshold_db"] == pytest.approx(before["unmask_threshold_db"], abs=1e-9)


def test_explore_with_a_key_attaches_it_as_mix_does(cut_run, tmp_path):
    """``evomix explore --key keys=drums --lock keys.unmask_depth_db=6``: every cell's cut is keyed by the
    drums, the key is recorded with the constraints, and a cell renders back to its file with the cut."""
    folder, paths = cut_run
    out = tmp_path / "map"
    res = run_cli("explore", *paths, "--out", out, "--iterations", 1, "--max-exports", 2, "--seed", 3,
                  "--key", "keys=drums", "--lock", "keys.unmask_depth_db=6", "--quiet")
    assert res.exit_code == 0, res.output
    archive = json.loads((out / "archive.json").read_text())
    assert archive["settings"]["constraints"]["keys"] == {"keys": "drums"}
    assert archive["settings"]["constraints"]["locks"]["keys.unmask_depth_db"] == 6.0
    for c in archive["cells"]:
        cut = _cut(c["params"])
        assert cut["unmask_key"] == "drums" and cut["unmask_depth_db"] == 6.0
        assert 800.0 <= cut["unmask_hz"] <= 5000.0  # the keys' default band (constraints.UNMASK_ROLE_HZ)
    cell = sorted(out.glob("cell-*.json"))[0]
    wav = read_audio(out / f"{cell.stem}.wav")[0]
    again = read_audio(api.render(cell, paths, tmp_path / "again.wav"))[0]
    assert np.abs(again - wav).max() <= 1e-6


def test_explore_without_cuts_keeps_them_off(cut_run):
    """No --key and no unmask gene named (``UNMASK_BY_DEFAULT`` off): the cells carry no cut."""
    from evomix.search.constraints import UNMASK_BY_DEFAULT

    if UNMASK_BY_DEFAULT:
        pytest.skip("the dynamic cuts are searched by default")
    _, paths = cut_run
    result = explore(paths, time_limit=None, iterations=0, max_exports=0, seed=1)
    assert result.cells and all("unmask_key" not in c["params"]["stems"]["keys"] for c in result.cells)
