"""The gene table: decode/encode, ranges, locks, JSON round trip."""
import numpy as np
import pytest

from evomix.errors import ParameterError
from evomix.search.genome import MASTER_GENES, STEM_GENES, GeneTable, Params


def test_decode_respects_ranges_and_scales(rng):
    table = GeneTable(3)
    g = rng.uniform(size=(50, table.n_genes))
    p = table.decode(g, np.zeros(3))
    for gene in STEM_GENES:
        v = getattr(p, gene.name)
        assert v.shape == (50, 3)
        assert v.min() >= gene.low - 1e-9 and v.max() <= gene.high + 1e-9, gene.name
    for gene in MASTER_GENES:
        assert getattr(p, gene.name).shape == (50,)
    # log scale: the midpoint of [0, 1] is the geometric mean
    hp = STEM_GENES[2]
    assert hp.scale == "log" and hp.decode(np.array(0.5)) == pytest.approx(np.sqrt(hp.low * hp.high))


def test_encode_inverts_decode(rng):
    table = GeneTable(4)
    g = rng.uniform(size=(10, table.n_genes))
    p = table.decode(g, np.array([1.0, -2.0, 3.0, 0.0]))
    np.testing.assert_allclose(table.encode(p), g, atol=1e-9)


def test_neutral_genome_is_a_flat_unprocessed_mix():
    table = GeneTable(2)
    p = table.decode(table.neutral()[None], np.array([3.0, -4.0]))
    np.testing.assert_allclose(p.trim_db, [[3.0, -4.0]])
    np.testing.assert_allclose(p.gain_db, 0.0, atol=1e-9)
    np.testing.assert_allclose(p.pan, 0.0, atol=1e-9)
    for name in ("low_shelf_db", "peak_db", "high_shelf_db"):
        np.testing.assert_allclose(getattr(p, name), 0.0, atol=1e-9)
    np.testing.assert_allclose(p.comp_ratio, 1.0)
    np.testing.assert_allclose(p.highpass_hz, 20.0)


def test_initial_population_is_seeded_and_bounded():
    table = GeneTable(3)
    a = table.initial_population(16, np.random.default_rng(1))
    b = table.initial_population(16, np.random.default_rng(1))
    c = table.initial_population(16, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a[0], table.neutral())


def test_lock_and_range_edit():
    table = GeneTable(2).with_range("pan", 0.0)
    p = table.decode(np.random.default_rng(0).uniform(size=(8, table.n_genes)), np.zeros(2))
    np.testing.assert_array_equal(p.pan, 0.0)
    t2 = GeneTable(2).with_range("gain_db", -3.0, 3.0)
    p2 = t2.decode(np.random.default_rng(0).uniform(size=(8, t2.n_genes)), np.zeros(2))
    assert p2.gain_db.min() >= -3 and p2.gain_db.max() <= 3
    with pytest.raises(ParameterError, match="unknown gene 'pann'"):
        GeneTable(2).with_range("pann", 0.0)


def test_params_json_round_trip(rng):
    table = GeneTable(2)
    p = table.decode(rng.uniform(size=(3, table.n_genes)), np.array([2.0, -1.0]))
    d = p.to_dict(1, ["a", "b"], ["vocal", "bass"])
    assert d["stems"]["a"]["role"] == "vocal" and "highpass_hz" in d["stems"]["a"]["eq"]
    q = Params.from_dict(d, ["b", "a"])  # order follows the given names
    assert q.gain_db[0, 0] == pytest.approx(p.gain_db[1, 1])
    assert q.comp_release_ms[0, 1] == pytest.approx(p.comp_release_ms[1, 0])
    assert q.master_comp_ratio[0] == pytest.approx(p.master_comp_ratio[1])


def test_params_from_dict_errors():
    with pytest.raises(ParameterError, match="no settings for stem"):
        Params.from_dict({"stems": {}, "master": {}}, ["vocal"], source="x.json")
    with pytest.raises(ParameterError, match="x.json"):
        Params.from_dict({"nope": 1}, ["vocal"], source="x.json")


def test_decode_rejects_wrong_length():
    with pytest.raises(ParameterError, match="genes"):
        GeneTable(2).decode(np.zeros((1, 5)), np.zeros(2))
