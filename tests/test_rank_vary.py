"""``evomix rank`` (re-rank a saved front, issue 12 item 4) and ``evomix vary`` (variations and
breeding, item 6), on a small synthetic song."""
import itertools
import json
import shutil
import threading
import time

import numpy as np
import pytest

import evomix.api as api
import evomix.cli as cli_mod
import evomix.tools.vary as vary_mod
from evomix.choose import verify as verify_mod
from evomix.choose.describe import DISTINCT_JND, jnd_distance, jnd_matrix
from evomix.core.meter import integrated_loudness, true_peak_dbtp
from evomix.errors import ParameterError
from evomix.io.audio import read_audio
from evomix.output.result import Member
from evomix.search.checkpoint import file_sha256
from evomix.search.constraints import Constraints
from evomix.search.genome import GeneTable, Params
from evomix.tools import rank as rank_mod
from evomix.tools.rank import rank, write_ranked
from evomix.tools.vary import genome_distance, vary
from tests.support import run_cli, small_search, song_stems, write_stems

pytestmark = pytest.mark.slow  # every test reads one finished run (a 16 x 12 search), or ranks or varies it


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished run (4 stems, 3 s), its stems and the wall time of search + export."""
    folder = tmp_path_factory.mktemp("rank")
    paths = write_stems(folder / "stems", song_stems(duration_s=3.0))
    t0 = time.perf_counter()
    result = api.mix(paths, search=small_search(population=16, generations=25, seed=7, alternatives=4))
    result.write(folder / "run")
    return folder, paths, time.perf_counter() - t0


def _alt_table(folder, name, stems) -> GeneTable:
    """The gene table the run searched for ``name`` (its recorded ranges: the reverb bus's genes)."""
    d = json.loads((folder / f"{name}.json").read_text())
    names = [p.stem for p in stems]
    return Constraints.from_dict(d.get("constraints"), source=name).apply(GeneTable(len(names)), names)


def _alt_genome(folder, name, stems):
    d = json.loads((folder / f"{name}.json").read_text())
    names = [p.stem for p in stems]
    return _alt_table(folder, name, stems).encode(Params.from_dict(d["params"], names))[0]


def test_rank_changes_the_top_alternative_without_searching_again(run, tmp_path):
    folder, paths, t_run = run
    top = {}
    for w in ("masking=8", "loudness=8"):
        res = rank(folder / "run", weights=w)
        write_ranked(res, tmp_path / w, in_place=False)
        # re-weighting only: no analysis, no search, the run's renders and its before.wav reused
        # (the time it takes is measured by experiments/bench_rank.py, not asserted here)
        assert res.settings["rank_used_saved_scores"] and res.settings["reusable_renders"] == 4
        assert (tmp_path / w / "before.wav").read_bytes() == (folder / "run" / "before.wav").read_bytes()
        top[w] = json.loads((tmp_path / w / "alt-01.json").read_text())
        M = jnd_matrix([json.loads(p.read_text())["descriptors"] for p in sorted((tmp_path / w).glob("alt-*.json"))])
        assert jnd_distance(M, M)[np.triu_indices(len(M), 1)].min() >= DISTINCT_JND
    a, b = top["masking=8"], top["loudness=8"]
    assert a["params"] != b["params"]
    assert a["objectives"]["masking"] <= b["objectives"]["masking"]
    assert b["objectives"]["loudness"] <= a["objectives"]["loudness"]
    ranked = json.loads((tmp_path / "masking=8" / "front.json").read_text())  # can be ranked again
    g = np.array([m["genome"] for m in ranked["members"] if m.get("alternative") == "alt-01"][0])
    assert np.allclose(g, _alt_genome(tmp_path / "masking=8", "alt-01", paths), atol=1e-6)


def test_rank_with_the_run_s_weights_reuses_its_renders_bit_for_bit(run, tmp_path):
    folder, _, _ = run
    res = rank(folder / "run")  # the run's own weights: the same picks, read back, not rendered again
    write_ranked(res, tmp_path / "same", in_place=False)
    assert res.settings["new_renders"] == 0 and res.settings["reused_renders"] == len(res.alternatives)
    for p in sorted((folder / "run").glob("alt-*.wav")):
        assert (tmp_path / "same" / p.name).read_bytes() == p.read_bytes()


def test_rank_in_place_with_stems_given_and_a_new_objective(run, tmp_path):
    folder, paths, _ = run
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    res = rank(copy, [p.parent for p in paths][:1], weights="balance=0,genre=2", alternatives=2)
    write_ranked(res, copy, in_place=True)
    assert sorted(p.name for p in copy.glob("alt-*.wav")) == ["alt-01.wav", "alt-02.wav"]  # stale ones removed
    front = json.loads((copy / "front.json").read_text())
    assert front["objectives"] == ["masking", "loudness", "genre"] and front["weights"]["genre"] == 2.0


def test_rank_errors_name_the_problem(run, tmp_path):
    folder, paths, _ = run
    with pytest.raises(ParameterError, match="front.json: no such file"):
        rank(tmp_path)
    with pytest.raises(ParameterError, match="made from stems"):
        rank(folder / "run", paths[:2])


@pytest.fixture(scope="module")
def varied(run, tmp_path_factory):
    folder, paths, _ = run
    out = tmp_path_factory.mktemp("vary") / "v"
    res = vary([folder / "run" / "alt-01.json"], paths, spread=0.3, n=4, seed=1)
    res.write(out)
    return res, out


def test_vary_returns_distinct_mixes_near_the_input_at_the_target(run, varied):
    folder, paths, _ = run
    res, out = varied
    parent = _alt_genome(folder / "run", "alt-01", paths)
    files = sorted(out.glob("alt-*.wav"))
    assert len(files) == 4 and len(res.alternatives) == 4
    for f in files:  # measured from the written files
        x, sr = read_audio(f)
        assert abs(integrated_loudness(x, sr) - res.target.target_lufs) <= 0.5
        assert true_peak_dbtp(x, sr) <= res.target.ceiling_dbtp + 0.01
    genomes = np.stack([_alt_genome(out, f.stem, paths) for f in files])
    dist = genome_distance(genomes, parent)
    assert np.all(np.diff(dist) >= -1e-6) and dist.min() > 0.01, dist  # ordered, none is the input
    assert np.allclose(dist, res.settings["genome_distance"], atol=1e-3)
    rows = [json.loads((out / f"{f.stem}.json").read_text())["descriptors"] for f in files]
    rows.append(json.loads((folder / "run" / "alt-01.json").read_text())["descriptors"])  # the input
    M = jnd_matrix(rows)
    assert jnd_distance(M, M)[np.triu_indices(len(rows), 1)].min() >= DISTINCT_JND  # audibly different


def test_spread_sets_how_far(run):
    folder, paths, _ = run
    near = vary([folder / "run" / "alt-01.json"], paths, spread=0.1, n=2, seed=1).settings["genome_distance"]
    far = vary([folder / "run" / "alt-01.json"], paths, spread=0.6, n=2, seed=1).settings["genome_distance"]
    assert max(near) < min(far), (near, far)


def test_breeding_two_parents_gives_children_between_them(run, tmp_path):
    folder, paths, _ = run
    # the two alternatives farthest apart: room between them for children that sound distinct from both
    names = sorted(p.stem for p in (folder / "run").glob("alt-*.json"))
    genomes = {n: _alt_genome(folder / "run", n, paths) for n in names}
    pa, pb = max(itertools.combinations(names, 2),
                 key=lambda ab: float(genome_distance(genomes[ab[0]][None], genomes[ab[1]])[0]))
    a, b = genomes[pa], genomes[pb]
    res = vary([folder / "run" / f"{pa}.json", folder / "run" / f"{pb}.json"], paths, spread=0.1, n=4, seed=3)
    res.write(tmp_path / "kids")
    files = sorted((tmp_path / "kids").glob("alt-*.wav"))
    kids = np.stack([_alt_genome(tmp_path / "kids", f.stem, paths) for f in files])
    assert len(kids) >= 3
    d_ab = float(genome_distance(a[None], b)[0])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    differ = hi - lo > 0.05  # genes where the parents differ
    inside = ((kids >= lo - 0.02) & (kids <= hi + 0.02))[:, differ].mean(axis=1)  # share of genes inside the box
    t = ((kids - a) @ (b - a)) / ((b - a) @ (b - a))  # projection on the segment a -> b
    assert np.all(inside >= 0.9), inside
    assert np.all((t > 0.0) & (t < 1.0)), t
    assert np.all(genome_distance(kids, a) < d_ab) and np.all(genome_distance(kids, b) < d_ab)


def test_cli_rank_and_vary(run, tmp_path):
    folder, paths, _ = run
    r = run_cli("rank", folder / "run", "--weights", "genre=4", "--out", tmp_path / "r", "--alternatives", 2, "--json",
                "--quiet")
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]  # JSON lines: order, each file, summary
    ranking, written, summary = lines[0]["ranking"], [x["written"] for x in lines[1:-1]], lines[-1]
    assert [row["alternative"] for row in ranking["order"]] == ["alt-01", "alt-02"]
    assert [w["alternative"] for w in written] == ["alt-01", "alt-02"]
    assert len(summary["alternatives"]) == 2 and all("labels" in a for a in summary["alternatives"])
    r = run_cli("vary", folder / "run" / "alt-01.json", "--out", tmp_path / "v")
    assert r.exit_code == 1 and "give the stems" in r.output, r.output
    r = run_cli("vary", folder / "run" / "alt-01.json", *paths, "--out", tmp_path / "v", "-n", 2, "--spread", 2)
    assert r.exit_code == 1 and "--spread" in r.output, r.output


def test_labels_against_the_input_agree_with_the_descriptors(run, varied):
    from evomix.choose.select import LABELS

    folder, _, _ = run
    res, out = varied
    ref = json.loads((folder / "run" / "alt-01.json").read_text())["descriptors"]
    for m, labels in zip(res.alternatives, res.settings["labels_vs_input"]):
        for lab in labels:
            key, sign = next((k, 1 if lab == up else -1) for k, (up, down) in LABELS.items() if lab in (up, down))
            mine, theirs = m.measured["descriptors"][key], ref[key]
            gap = np.log2(mine / theirs) / 0.1 if key == "centroid_hz" else mine - theirs
            assert sign * gap >= 1.0 - 1e-9, (lab, mine, theirs)


def test_vary_keeps_to_the_limiter_budget(run):
    """``max_limiting_db``: no variation needs more limiting (fast tier) than the budget, or than
    its parent where the parent needs more; without a budget, the same variation of the same mix
    at a loud target goes beyond both."""
    from evomix.choose.describe import fast_descriptors
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session

    folder, paths, _ = run
    kw = dict(spread=1.0, n=4, seed=2, target_lufs=-8.0)  # loud: most mixes need the limiter
    session = load_session(paths)
    analysis, table = analyze_session(session), _alt_table(folder / "run", "alt-01", paths)
    parent_gr = float(fast_descriptors(analysis, table, _alt_genome(folder / "run", "alt-01", paths)[None, :],
                                       target_lufs=-8.0, ceiling_dbtp=-1.0)["limiter_gr_db"][0])
    allowed = max(0.5, parent_gr)
    free = vary([folder / "run" / "alt-01.json"], paths, max_limiting_db=None, **kw)
    assert max(m.fast_descriptors["limiter_gr_db"] for m in free.alternatives) > allowed  # the premise
    tight = vary([folder / "run" / "alt-01.json"], paths, max_limiting_db=0.5, **kw)
    assert tight.alternatives and tight.settings["max_limiting_db"] == 0.5
    assert max(m.fast_descriptors["limiter_gr_db"] for m in tight.alternatives) <= allowed + 1e-6


# ------------------------------------------------------------------ rank and vary as an instant loop
# (issue 23 item 4): the new order before any audio is read, the run's renders reused, each file
# written the moment it is final, Ctrl-C keeping what is written.


class Renders:
    """Counts the exact renders started (``mix_strips``) and finished (``verify.finish_one``), and
    can run a hook before a finish (``before_finish(n)``, n = 1 for the first)."""

    def __init__(self, monkeypatch, before_finish=None):
        self.started = self.finished = 0
        self.before_finish = before_finish
        real_strips, real_finish = rank_mod.mix_strips, verify_mod.finish_one

        def strips(*a, **kw):
            self.started += 1
            return real_strips(*a, **kw)

        def finish(*a, **kw):
            if self.before_finish is not None:
                self.before_finish(self.finished + 1)
            out = real_finish(*a, **kw)
            self.finished += 1
            return out

        monkeypatch.setattr(rank_mod, "mix_strips", strips)
        monkeypatch.setattr(verify_mod, "finish_one", finish)


def _new_first(folder) -> str:
    """Weights under which the run's saved front puts a member it did not export first."""
    for w in ("masking=8", "balance=8", "genre=8", "loudness=8"):
        r = rank_mod.plan(folder / "run", weights=w)
        if r.planned[0] not in r.saved_files:
            return w
    raise AssertionError("no weighting puts a new member first")


def test_the_run_saves_what_rank_needs_to_reuse_its_files(run):
    folder, _, _ = run
    front = json.loads((folder / "run" / "front.json").read_text())
    exported = [m for m in front["members"] if "alternative" in m]
    assert len(exported) == 4
    for m in exported:
        wav = folder / "run" / f"{m['alternative']}.wav"
        assert m["audio"]["sha256"] == file_sha256(wav)
        assert m["audio"]["frames"] == read_audio(wav)[0].shape[-1]


def test_rank_prints_the_new_order_before_reading_any_audio(run, tmp_path, monkeypatch):
    """The table (and its --json line) comes before the stems are loaded and before any render."""
    folder, _, _ = run
    events = []
    real_load = rank_mod.pipeline.load
    monkeypatch.setattr(rank_mod.pipeline, "load", lambda *a, **kw: (events.append("load"), real_load(*a, **kw))[1])
    Renders(monkeypatch, before_finish=lambda n: events.append("render"))
    real_line = cli_mod._json_line

    def line(stream, obj):
        events.append(next(iter(obj)))
        real_line(stream, obj)

    monkeypatch.setattr(cli_mod, "_json_line", line)
    w = _new_first(folder)
    r = run_cli("rank", folder / "run", "--weights", w, "--out", tmp_path / "r", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    assert events[0] == "ranking" and "load" in events and "render" in events, events
    table = json.loads(r.stdout.splitlines()[0])["ranking"]
    assert table["order"][0]["from_run"] is None and table["order"][0]["tier"] == "fast"
    assert all(set(row["scores"]) == set(table["objectives"]) and row["descriptors"] for row in table["order"])


def test_rank_plans_from_saved_scores_alone(run, monkeypatch):
    """Re-weighting only: the plan reads no audio and renders nothing."""
    folder, _, _ = run

    def no_audio(*a, **kw):
        raise AssertionError("the plan read audio")

    monkeypatch.setattr(rank_mod.pipeline, "load", no_audio)
    monkeypatch.setattr(rank_mod.pipeline, "analyse", no_audio)
    r = rank_mod.plan(folder / "run", weights="loudness=8")
    table = rank_mod.ranking_table(r)
    assert r.session is None and len(table["order"]) == 4 and table["reused"] + table["to_render"] == 4


def test_rank_does_not_render_a_member_the_run_rendered(run, tmp_path, monkeypatch):
    folder, _, _ = run
    renders = Renders(monkeypatch)
    res = rank_mod.export(rank_mod.plan(folder / "run"), tmp_path / "same", in_place=False)  # the run's weights
    assert renders.started == 0 and res.settings["reused_renders"] == len(res.alternatives) == 4
    for p in sorted((folder / "run").glob("alt-*.wav")):
        assert (tmp_path / "same" / p.name).read_bytes() == p.read_bytes()
    w = _new_first(folder)
    r = rank_mod.plan(folder / "run", weights=w)
    table = rank_mod.ranking_table(r)
    res = rank_mod.export(r, tmp_path / "new", in_place=False)
    reused = {row["alternative"]: row["from_run"] for row in table["order"] if row["from_run"]}
    assert renders.started == res.settings["new_renders"] >= table["to_render"] >= 1  # replacements may add some
    for name, src in reused.items():  # the files the run rendered are copied, not rendered again
        assert (tmp_path / "new" / f"{name}.wav").read_bytes() == (folder / "run" / f"{src}.wav").read_bytes()


def test_rank_renders_a_run_file_that_is_not_the_one_it_wrote(run, tmp_path, monkeypatch):
    """A run's alt-NN.wav replaced by another file of the same length is not reused: the member is
    rendered again, and the render is the run's file bit for bit."""
    folder, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    original = (copy / "alt-02.wav").read_bytes()
    shutil.copyfile(copy / "alt-03.wav", copy / "alt-02.wav")  # same length, another mix
    renders = Renders(monkeypatch)
    res = rank_mod.export(rank_mod.plan(copy), tmp_path / "out", in_place=False)
    assert renders.finished == 1 and res.settings["reused_renders"] == 3
    assert (tmp_path / "out" / "alt-02.wav").read_bytes() == original


def test_rank_writes_the_first_file_after_one_render(run, tmp_path, monkeypatch):
    """The second render's master chain waits until alt-01 is written: a rank that wrote its files
    only after every render would wait out the timeout here."""
    folder, _, _ = run
    w = _new_first(folder)
    first_written = threading.Event()
    waited = []
    Renders(monkeypatch, before_finish=lambda n: n == 2 and waited.append(first_written.wait(timeout=60)))
    seen = []

    def on_written(x):
        seen.append((x.number, x.from_run, x.wav.is_file(), (x.wav.with_suffix(".json")).is_file()))
        first_written.set()

    r = rank_mod.plan(folder / "run", weights=w)
    rank_mod.export(r, tmp_path / "out", in_place=False, on_written=on_written)
    assert seen[0] == (1, None, True, True), seen
    assert waited == [True], "the second render finished before the first file was written"


def test_an_interrupted_rank_keeps_the_files_it_wrote(run, tmp_path, monkeypatch):
    folder, _, _ = run
    w = _new_first(folder)

    def ctrl_c(n):
        if n == 2:
            raise KeyboardInterrupt

    Renders(monkeypatch, before_finish=ctrl_c)
    r = rank_mod.plan(folder / "run", weights=w)
    with pytest.raises(KeyboardInterrupt):
        rank_mod.export(r, tmp_path / "out", in_place=False)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names[:2] == ["alt-01.json", "alt-01.wav"] and "front.json" not in names, names
    assert not any(n.startswith(".") for n in names), names  # no temporary file left
    saved = json.loads((tmp_path / "out" / "alt-01.json").read_text())
    assert saved["params"] == r.front[r.planned[0]].params
    n_samples = read_audio(folder / "run" / "alt-01.wav")[0].shape[-1]
    assert read_audio(tmp_path / "out" / "alt-01.wav")[0].shape[-1] == n_samples  # complete


def test_an_interrupted_rank_in_place_leaves_the_run_s_files_usable(run, tmp_path, monkeypatch):
    """In place, a file already replaced holds the new member and its json says so: the next rank
    does not take it for the run's, and the hidden links to the run's files are gone."""
    folder, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    w = _new_first(folder)

    def ctrl_c(n):
        if n == 2:
            raise KeyboardInterrupt

    renders = Renders(monkeypatch, before_finish=ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        rank_mod.export(rank_mod.plan(copy, weights=w), copy, in_place=True)
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")]
    renders.before_finish = None
    renders.started = 0
    res = rank_mod.export(rank_mod.plan(copy), tmp_path / "again", in_place=False)  # the run's own weights
    assert renders.started >= 1 and res.settings["reused_renders"] <= 3  # alt-01 is no longer the run's


def test_rank_in_place_moves_the_run_s_files_to_their_new_numbers(run, tmp_path):
    folder, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    before = {p.name: p.read_bytes() for p in copy.glob("alt-*.wav")}
    written = []
    for w in ("loudness=8", "masking=8", "genre=8", "balance=8", "loudness=8,balance=8"):  # one that moves a file
        r = rank_mod.plan(folder / "run", weights=w, alternatives=3)
        if any(r.saved_files[j].alternative != f"alt-{n + 1:02d}" for n, j in enumerate(r.planned)
               if j in r.saved_files):
            break
    rank_mod.export(rank_mod.plan(copy, weights=w, alternatives=3), copy, in_place=True, on_written=written.append)
    assert sorted(p.name for p in copy.glob("alt-*.wav")) == ["alt-01.wav", "alt-02.wav", "alt-03.wav"]
    assert [x.number for x in written] == [1, 2, 3] and any(x.from_run for x in written)  # guard: a move
    for x in written:
        if x.from_run:
            assert (copy / f"alt-{x.number:02d}.wav").read_bytes() == before[f"{x.from_run}.wav"]
    front = json.loads((copy / "front.json").read_text())
    for m in front["members"]:
        if "alternative" in m:  # front.json, alt-NN.json and alt-NN.wav agree: the next rank can reuse them
            assert json.loads((copy / f"{m['alternative']}.json").read_text())["params"] == m["params"]
            assert m["audio"]["sha256"] == file_sha256(copy / f"{m['alternative']}.wav")


@pytest.mark.parametrize("weights", ["masking=8", "loudness=8"])
def test_streamed_choice_agrees_with_verify(run, weights):
    """Two routes: the streamed verification (rank) picks what ``verify.verified_alternatives``
    picks from the same ranked front."""
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session

    folder, _, _ = run
    streamed = rank(folder / "run", weights=weights)
    r = rank_mod.plan(folder / "run", weights=weights)
    session = load_session(r.files, roles=r.roles, sr=r.front_d["sr"])
    analysis = analyze_session(session)
    rows = [r.member_params(i) for i in range(len(r.front))]
    params = Params(**{k: np.concatenate([getattr(p, k) for p in rows]) for k in rows[0].__dict__})
    for i in r.scored:  # the run's exports come with their scores: not rendered again
        r.front[i].render = rank_mod.ExactRender(mix=None, stems=None, raw_loudness_lufs=0.0, normalise_db=0.0,
                                                 limiter_gr_db=0.0)
    picks, _ = verify_mod.verified_alternatives(r.front, r.G, r.F, r.k, session, analysis, params, r.target, r.names,
                                                weights=r.wv, descriptors=r.D, known_bad=r.known_bad,
                                                parents=r.parents, space_range=r.space_range)
    assert [m.params for m in streamed.alternatives] == [r.front[i].params for i in picks]


def test_rank_keeps_the_run_s_locks(tmp_path):
    """Members are the run's own mixes: a locked value holds in every re-ranked alternative."""
    from evomix.search.constraints import Constraints

    paths = write_stems(tmp_path / "stems", song_stems(duration_s=2.0))
    c = Constraints.parse(["vocal.gain_db=-3", "master.comp.ratio=2"], None)
    api.mix(paths, search=small_search(population=8, generations=3, seed=2, alternatives=2),
            constraints=c).write(tmp_path / "run")
    res = rank_mod.export(rank_mod.plan(tmp_path / "run", weights="masking=8"), tmp_path / "r", in_place=False)
    for p in sorted((tmp_path / "r").glob("alt-*.json")):
        d = json.loads(p.read_text())
        assert d["params"]["stems"]["vocal"]["gain_db"] == -3.0 and d["params"]["master"]["comp"]["ratio"] == 2.0
    assert all(isinstance(m, Member) for m in res.alternatives)


def test_vary_writes_its_first_variation_after_one_render(run, tmp_path, monkeypatch):
    """The parent's exact descriptors come from its alt-NN.json and the report's "before" from its
    run: the first render is a variation, written at once; the streamed files are those of
    ``vary(...).write`` (two routes, one result)."""
    from evomix.output import report as report_mod

    folder, paths, _ = run
    renders = []

    def no_before(*a, **kw):
        raise AssertionError("the run's before.wav fits: not rendered again")

    monkeypatch.setattr(report_mod.rd, "render_before", no_before)
    real_render = vary_mod.render_alternatives

    def counted(*a, **kw):
        out = real_render(*a, **kw)
        renders.append(len(out))
        return out

    monkeypatch.setattr(vary_mod, "render_alternatives", counted)
    at_write = []
    res = vary([folder / "run" / "alt-01.json"], paths, spread=0.3, n=3, seed=1, out=tmp_path / "v",
               on_written=lambda w: at_write.append((w.number, sum(renders), w.wav.is_file())))
    assert res.settings["parents_rendered"] == 0 and at_write[0] == (1, 1, True), at_write
    assert [n for n, _, _ in at_write] == [1, 2, 3]
    monkeypatch.undo()
    mem = vary([folder / "run" / "alt-01.json"], paths, spread=0.3, n=3, seed=1)
    mem.write(tmp_path / "m")
    for p in sorted((tmp_path / "m").glob("alt-*")):
        a, b = p.read_bytes(), (tmp_path / "v" / p.name).read_bytes()
        assert a == b, p.name
    assert (tmp_path / "v" / "front.json").is_file() and (tmp_path / "v" / "report.html").is_file()
    assert (tmp_path / "v" / "before.wav").read_bytes() == (folder / "run" / "before.wav").read_bytes()


def test_vary_renders_the_parent_when_its_saved_descriptors_do_not_hold(run):
    folder, paths, _ = run
    res = vary([folder / "run" / "alt-01.json"], paths, spread=0.3, n=1, seed=1, target_lufs=-16.0)
    assert res.settings["parents_rendered"] == 1


def test_rank_renders_without_analysing_the_stems(run, tmp_path, monkeypatch):
    """Two routes, one result: a new render in rank scores as ``evomix mix`` scores it with a full
    analysis of the stems, and rank makes none."""
    from evomix.core.runtime import available_cores
    from evomix.engine.analysis import analyze_session
    from evomix.io.audio import load_session

    folder, _, _ = run
    w = _new_first(folder)
    r = rank_mod.plan(folder / "run", weights=w)
    j = r.planned[0]
    session = load_session(r.files, roles=r.roles, sr=r.front_d["sr"])
    analysis = analyze_session(session)
    strips = rank_mod.mix_strips(session, session.is_mono, session.sr, r.member_params(j), index=0,
                                 grid=analysis.grid, threads=available_cores())
    _, exact, measured = verify_mod.finish_one(strips, analysis, r.target, r.names)

    def no_analysis(*a, **kw):
        raise AssertionError("the stems were analysed")

    monkeypatch.setattr(rank_mod.pipeline, "analyse", no_analysis)
    monkeypatch.setattr(rank_mod, "analyze_session", no_analysis)
    res = rank_mod.export(rank_mod.plan(folder / "run", weights=w), tmp_path / "out", in_place=False)
    same = [m for m in res.front if m.params == r.front[j].params]
    assert same[0].exact == exact and same[0].measured["descriptors"] == measured["descriptors"]


def test_a_saved_analysis_falls_back_to_a_real_one(stem_session):
    """What the run saved stands in for the analysis; anything else is taken from a real one."""
    from evomix.engine.analysis import analyze_session

    saved = rank_mod._SavedAnalysis(stem_session, np.zeros(stem_session.n_stems))
    assert saved.roles == tuple(stem_session.roles) and "band_power" not in saved.__dict__
    assert np.array_equal(saved.band_power, analyze_session(stem_session).band_power)
