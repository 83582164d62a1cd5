"""The gene table: decode/encode, ranges, locks, JSON round trip, the field-by-field check of a params file."""
import copy
import json

import numpy as np
import pytest

from evomix.errors import ParameterError
from evomix.search.genome import (
    MASTER_GENES,
    STEM_GENES,
    GeneTable,
    Params,
    checked_number,
    params_stem_names,
    saved_number,
)


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


def _saved(names=("vocal", "bass")) -> dict:
    table = GeneTable(len(names))
    return table.decode(table.neutral()[None], np.zeros(len(names))).to_dict(0, list(names), ["vocal", "bass"])


def _set(path, value):
    def edit(d):
        *keys, last = path.split(".")
        for k in keys:
            d = d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("stems.vocal.gain_db", "loud"), "stems.vocal.gain_db must be a number (dB), got 'loud'"),
    (_set("stems.vocal.gain_db", True), "stems.vocal.gain_db must be a number (dB), got true"),
    (_set("stems.bass.pan", None), "stems.bass.pan must be a number, got null"),
    (_set("stems.vocal.eq", [1, 2]), "stems.vocal.eq must be an object of numbers (highpass_hz, low_shelf_hz, low_"
                                     "shelf_db, peak_hz, peak_db, peak_q, high_shelf_hz, high_shelf_db), got [1, 2]"),
    (_set("stems.vocal.comp", "fast"), "stems.vocal.comp must be an object of numbers (threshold_db, ratio, "
                                       "attack_ms, release_ms), got 'fast'"),
    (_set("stems.vocal.gain_db", KeyError), "stems.vocal.gain_db is missing; it must be a number (dB)"),
    (_set("stems.vocal.eq", KeyError), "stems.vocal.eq is missing; it must be an object of numbers (highpass_hz"),
    (_set("stems.bass.comp.attack_ms", [5]), "stems.bass.comp.attack_ms must be a number (ms), got [5]"),
    (_set("stems.bass.eq.peak_hz", float("inf")), "stems.bass.eq.peak_hz must be a finite number (Hz), got Infinity"),
    (_set("stems.bass.trim_db", 10 ** 400), "stems.bass.trim_db must be a finite number (dB), got 1000"),
    (_set("stems.bass", [1]), "stems.bass must be an object of settings (trim_db, gain_db, pan, eq, comp), got [1]"),
    (_set("stems", "vocal"), "stems must be an object {stem name: settings}, got 'vocal'"),
    (_set("master", KeyError), "master is missing; it must be an object of the master chain's settings"),
    (_set("master.comp.ratio", "2"), "master.comp.ratio must be a number, got '2'"),
    (_set("master.eq.low_shelf_db", False), "master.eq.low_shelf_db must be a number (dB), got false"),
    (_set("master.comp", None), "master.comp must be an object of numbers (threshold_db, ratio), got null"),
])
def test_params_from_dict_names_the_stem_parameter_and_type(edit, message):
    d = _saved()
    edit(d)
    with pytest.raises(ParameterError) as e:
        Params.from_dict(d, ["vocal", "bass"], source="alt-01.json")
    assert str(e.value).startswith(f"alt-01.json: {message}"), str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 240


def test_params_from_dict_takes_what_to_dict_wrote_unchanged():
    d = _saved()
    again = json.loads(json.dumps(d))  # as read back from alt-NN.json
    p, q = Params.from_dict(d, ["bass", "vocal"]), Params.from_dict(again, ["bass", "vocal"])
    for k, v in p.__dict__.items():
        np.testing.assert_array_equal(v, getattr(q, k))
    d2 = copy.deepcopy(d)
    d2["stems"]["vocal"]["gain_db"] = -3  # a JSON integer is a number
    assert Params.from_dict(d2, ["vocal", "bass"]).gain_db[0, 0] == -3.0
    assert params_stem_names(d) == ["vocal", "bass"]


@pytest.mark.parametrize("value, message", [
    (True, "x.json: target_lufs must be a number (LUFS), got true"),
    ("-14", "x.json: target_lufs must be a number (LUFS), got '-14'"),
    (float("nan"), "x.json: target_lufs must be a finite number (LUFS), got NaN"),
    ({"a": 1}, 'x.json: target_lufs must be a number (LUFS), got {"a": 1}'),
])
def test_checked_number_refuses_what_is_not_a_finite_number(value, message):
    with pytest.raises(ParameterError) as e:
        checked_number(value, "target_lufs", "x.json", "LUFS")
    assert str(e.value) == message
    assert checked_number(np.float32(2.5), "x", "s") == 2.5


def test_saved_number_defaults_and_whole_numbers():
    assert saved_number({}, "sr", "x.json", None, integer=True) is None
    assert saved_number({"sr": None}, "sr", "x.json", None, integer=True) is None
    assert saved_number({"sr": 48000}, "sr", "x.json", None, integer=True) == 48000
    assert saved_number({"target_lufs": -9}, "target_lufs", "x.json", -14.0) == -9.0
    with pytest.raises(ParameterError, match=r"^x.json: sr must be a whole number \(Hz\), got 44100.5$"):
        saved_number({"sr": 44100.5}, "sr", "x.json", None, unit="Hz", integer=True)
    with pytest.raises(ParameterError, match=r"^x.json: target_lufs must be a number, got null$"):
        saved_number({"target_lufs": None}, "target_lufs", "x.json", -14.0)


def test_decode_rejects_wrong_length():
    with pytest.raises(ParameterError, match="genes"):
        GeneTable(2).decode(np.zeros((1, 5)), np.zeros(2))
