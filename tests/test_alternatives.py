"""Exported alternatives: chosen by weighted rank and spread, and replaced when their exact render
does not keep the fast tier's promise (exact score worse than every front member's fast score)."""
import numpy as np
import pytest

from evomix.choose import verify
from evomix.choose.select import choose_alternatives
from evomix.choose.verify import beyond_front as _beyond_front
from evomix.choose.verify import verified_alternatives as _verified_alternatives
from evomix.output.result import Member

NAMES = ("masking", "loudness")


@pytest.fixture
def front(rng):
    G = rng.uniform(size=(12, 6))
    F = rng.uniform(size=(12, 2))
    members = [Member(genome=G[i], params={}, objectives=_scores(F, i)) for i in range(12)]
    return G, F, members


def _scores(F, i):
    """Member i's scores as a dict, from F (n, 2)."""
    return {n: float(F[i, j]) for j, n in enumerate(NAMES)}


def _misjudged(F, bad, objective):
    """Exact scores equal to the fast ones F, except member ``bad``'s ``objective``: 0.1 beyond
    the front's worst fast score (the fast tier misjudged that member)."""
    worst = F.max(axis=0)
    k = NAMES.index(objective)
    return lambda i: {**_scores(F, i), **({objective: float(worst[k]) + 0.1} if i == bad else {})}


def fake_renders(exact_of):
    """A stand-in for the exact renderer: member i's exact scores are ``exact_of(i)``."""
    def render(session, analysis, params, picks, target, names, **_):  # **_: the progress phase
        return [(f"render-{i}", exact_of(i), {"integrated_lufs": -14.0}) for i in picks]
    return render


def test_continued_choice_keeps_the_kept_and_never_takes_the_excluded(rng):
    G, F = rng.uniform(size=(30, 5)), rng.uniform(size=(30, 3))
    first = choose_alternatives(G, F, 5)
    again = choose_alternatives(G, F, 5, keep=first[:3], exclude=first[3:])
    assert again[:3] == first[:3], (first, again)
    assert len(set(again)) == 5 and not set(again[3:]) & set(first[3:]), (first, again)
    assert choose_alternatives(G, F, 5, exclude=range(30)) == []


def test_a_misjudged_alternative_is_replaced_by_the_next_choice(front, monkeypatch):
    G, F, members = front
    first = choose_alternatives(G, F, 3)
    bad = first[1]
    exact = _misjudged(F, bad, "loudness")
    assert exact(bad)["loudness"] > F[:, 1].max()  # the test's premise: beyond the front's worst
    monkeypatch.setattr(verify, "render_alternatives", fake_renders(exact))
    picks, replaced = _verified_alternatives(members, G, F, 3, None, None, None, None, NAMES)
    assert replaced == [bad], (first, picks, replaced)
    assert bad not in picks and len(picks) == 3 and picks[0] == first[0], (first, picks)
    assert _beyond_front(members, picks, NAMES) == []
    assert members[bad].exact is not None  # its exact scores are kept for front.json


def test_when_every_candidate_is_misjudged_the_alternatives_are_still_exported(front, monkeypatch):
    G, F, members = front
    monkeypatch.setattr(verify, "render_alternatives", fake_renders(lambda i: {n: 10.0 for n in NAMES}))
    picks, replaced = _verified_alternatives(members, G, F, 3, None, None, None, None, NAMES)
    assert len(picks) == 3 and len(set(picks)) == 3, picks
    assert len(replaced) + len(picks) <= 3 * (verify.REPLACEMENT_ROUNDS + 1)  # bounded: the picks of each round
    assert {i for i, _ in _beyond_front(members, picks, NAMES)} == set(picks)


def test_each_round_renders_only_what_it_still_needs(front, monkeypatch):
    """A round renders the picks still missing: one misjudged pick costs one more render."""
    G, F, members = front
    first = choose_alternatives(G, F, 3)
    calls = []

    def render(session, analysis, params, picks, target, names, **_):
        calls.append(list(picks))
        return fake_renders(_misjudged(F, first[2], "masking"))(session, analysis, params, picks, target, names)

    monkeypatch.setattr(verify, "render_alternatives", render)
    picks, replaced = _verified_alternatives(members, G, F, 3, None, None, None, None, NAMES)
    assert calls[0] == first and len(calls) == 2 and len(calls[1]) == 1, calls
    assert picks[:2] == first[:2] and replaced == [first[2]] and calls[1][0] == picks[2], (first, picks, replaced)


def test_renders_on_several_threads_equal_renders_on_one(stem_session, stem_analysis, monkeypatch):
    """Each exact render runs its stems on every core: same audio and scores as on one."""
    from evomix.search.genome import GeneTable
    from objectives import Target, load_profile

    session, analysis = stem_session, stem_analysis
    table = GeneTable(session.n_stems)
    params = table.decode(table.initial_population(4, np.random.default_rng(2)), analysis.trim_db)
    target = Target(load_profile("pop"), -14.0, -1.0)
    names = ("masking", "loudness", "balance", "genre")
    monkeypatch.setattr(verify, "available_cores", lambda: 1)
    one = verify.render_alternatives(session, analysis, params, [0, 1, 2], target, names)
    monkeypatch.setattr(verify, "available_cores", lambda: 3)
    three = verify.render_alternatives(session, analysis, params, [0, 1, 2], target, names)
    from evomix.io.spill import materialise

    for (r1, e1, m1), (r2, e2, m2) in zip(one, three):
        assert np.array_equal(materialise(r1.mix), materialise(r2.mix)) and e1 == e2 and m1 == m2
        assert materialise(r1.mix).dtype == np.float32 and r1.stem_power is None  # only the master is kept


def test_a_squashed_mix_is_not_exported_while_enough_others_are_left(front, monkeypatch):
    """Members whose fast limiter gain reduction exceeds the limiter budget are left out of the
    choice (most squashed first), but never so many that fewer than k candidates remain."""
    MAX_EXPORT_LIMITING_DB = 6.0

    G, F, members = front
    first = choose_alternatives(G, F, 3)
    for i, m in enumerate(members):  # the first choice's two best picks and two more are squashed
        over_db = 3.0 + i if i in first[:2] or i in (10, 11) else -1.0
        m.fast_descriptors = {"limiter_gr_db": MAX_EXPORT_LIMITING_DB + over_db}
    squashed = verify.squashed_members(members, 3, MAX_EXPORT_LIMITING_DB)
    assert verify.squashed_members(members, 3, None) == []  # no budget, nothing left out
    assert set(squashed) == set(first[:2]) | {10, 11} and squashed[0] == 11  # most squashed first
    monkeypatch.setattr(verify, "render_alternatives", fake_renders(lambda i: _scores(F, i)))
    picks, _ = _verified_alternatives(members, G, F, 3, None, None, None, None, NAMES, known_bad=squashed)
    assert len(picks) == 3 and not set(picks) & set(squashed), (picks, squashed)
    # 12 members, 10 wanted: only 2 may go
    assert verify.squashed_members(members, 10, MAX_EXPORT_LIMITING_DB) == squashed[:2]
    for m in members[:3]:
        m.fast_descriptors = None  # a front.json of an older evomix: nothing is known, nothing is left out
    assert not set(verify.squashed_members(members, 3, MAX_EXPORT_LIMITING_DB)) & {0, 1, 2}
