"""Alternatives that are errors, not options (issue 21): a stem that carries the song's low end
panned to one side, or the lead buried under the mix, is never picked."""
from types import SimpleNamespace

import numpy as np

from evomix.choose import verify
from evomix.output.result import Member


def _analysis(low_energy, high_energy):
    """A stand-in Analysis: per stem, its energy under and over 120 Hz (two bands, one frame)."""
    power = np.zeros((len(low_energy), 2, 2, 1), np.float32)  # (stems, ch, bands, frames)
    power[:, :, 0, 0] = np.asarray(low_energy)[:, None] / 2
    power[:, :, 1, 0] = np.asarray(high_energy)[:, None] / 2
    return SimpleNamespace(grid=SimpleNamespace(centres_hz=np.array([60.0, 1000.0])), band_power=power)


def _member(pans: dict, vocal_lu=-4.0):
    return Member(genome=np.zeros(1), params={"stems": {n: {"pan": p} for n, p in pans.items()}}, objectives={},
                  fast_descriptors={"vocal_lu": vocal_lu})


def test_the_low_end_carriers_are_the_stems_holding_a_share_of_it():
    a = _analysis(low_energy=[8.0, 0.5, 1.5], high_energy=[5.0, 5.0, 5.0])  # bed, vocal, keys
    assert list(verify.low_end_carriers(a)) == [0]  # 80 % of the low end; keys 15 %, vocal 5 %
    two = _analysis(low_energy=[5.0, 4.0, 1.0], high_energy=[1.0, 1.0, 1.0])  # kick and bass share it
    assert list(verify.low_end_carriers(two)) == [0, 1]


def test_a_bed_panned_away_or_a_buried_lead_is_unusable_and_the_rest_are_not():
    names = ("bed", "vocal")
    a = _analysis(low_energy=[9.0, 0.2], high_energy=[5.0, 5.0])
    front = [_member({"bed": 0.0, "vocal": 0.0}),          # fine
             _member({"bed": -1.0, "vocal": 1.0}),         # the bed hard left, the vocal hard right
             _member({"bed": 0.15, "vocal": -0.6}),        # within the bound: a lead may be panned
             _member({"bed": 0.0, "vocal": 0.0}, -19.5),   # the lead 19.5 LU under the mix: buried
             _member({"bed": -0.25, "vocal": 0.0})]        # just past the bound
    assert verify.unusable_members(front, verify.low_end_carriers(a), names) == [1, 3, 4]


def test_without_a_lead_descriptor_only_the_pans_count():
    a = _analysis(low_energy=[9.0, 1.0], high_energy=[1.0, 1.0])
    front = [_member({"bed": 0.0, "keys": 1.0}, None), _member({"bed": 0.9, "keys": 0.0}, None)]
    assert verify.unusable_members(front, verify.low_end_carriers(a), ("bed", "keys")) == [1]


def test_in_a_two_stem_session_the_lead_sits_on_its_bed():
    """A bed (all the low end) and one lead of any name: the lead within [-11.5, +2.5] LU of the bed."""
    a = _analysis(low_energy=[9.0, 0.1], high_energy=[5.0, 5.0])
    front = [_member({"band": 0.0, "guitar": 0.0}, None) for _ in range(4)]
    levels = np.array([[-1.0, -4.0], [-0.1, -16.6], [-3.0, 0.5], [-2.5, -3.5]])  # (n, 2) dB re the mix
    # lead re bed: -3.0 (fine), -16.5 (buried), +3.5 (over the bed), -1.0 (fine)
    carriers = verify.low_end_carriers(a)
    assert verify.unusable_members(front, carriers, ("band", "guitar"), levels) == [1, 2]
    assert verify.unusable_members(front, carriers, ("band", "guitar")) == []  # without levels: pans only


def _params(n: int, **changes):
    """``n`` neutral candidates of a two-stem session, with ``changes`` {gene: {(row, stem): value}}."""
    from evomix.search.genome import GeneTable

    table = GeneTable(2)
    params = table.decode(np.tile(table.neutral(), (n, 1)), np.zeros(2))
    for gene, values in changes.items():
        arr = np.array(getattr(params, gene), dtype=float)
        for where, v in values.items():
            arr[where] = v
        object.__setattr__(params, gene, arr)
    return params


def test_settings_within_a_step_are_the_same_settings():
    from evomix.search.genome import within_a_step

    p = _params(8, gain_db={(1, 0): 0.8, (2, 0): 1.5}, pan={(3, 1): 0.08},
                peak_hz={(4, 0): 2000.0, (5, 0): 2000.0}, peak_db={(5, 0): 6.0, (6, 0): 6.0},
                comp_attack_ms={(7, 1): 60.0})
    assert within_a_step(p, 0, 1)          # 0.8 dB of fader: within the 1 dB step
    assert not within_a_step(p, 0, 2)      # 1.5 dB: a different setting
    assert within_a_step(p, 0, 3)          # pan 0.08
    assert within_a_step(p, 0, 4)          # an octave apart, but both peaks flat: inaudible, not compared
    assert not within_a_step(p, 6, 5)      # the same octave with the peaks at +6 dB: different
    assert within_a_step(p, 0, 7)          # a 6x attack at ratio 1 does nothing


def test_a_pick_with_an_earlier_pick_s_labels_and_settings_is_a_twin():
    """Issue 21: near-duplicates (the same labels and settings within a step) are not two of the five."""
    p = _params(4, gain_db={(1, 0): 0.5, (2, 0): 6.0, (3, 0): 0.3})
    base = {"centroid_hz": 1500.0, "side_mid_db": -12.0, "vocal_lu": -5.0, "low_end_db": -8.0, "punch_db": 8.0,
            "plr_db": 10.0, "lra_lu": 5.0}
    rows = [dict(base), dict(base, lra_lu=6.2), dict(base, lra_lu=5.6, low_end_db=-12.0), dict(base, punch_db=4.0)]
    front = [Member(genome=np.zeros(1), params={}, objectives={}, measured={"descriptors": r}) for r in rows]
    roles = ("bass", "vocal")
    # 0 and 1: 1.2 JND apart in loudness range (distinct by the JND rule), but both only 'warmer' than 2
    # and their faders 0.5 dB apart: one option twice
    assert verify.same_labels_and_settings(front, [0, 1, 2], p, roles) == {1}
    # 3 differs from 0 by 0.3 dB of fader only, yet is labelled "softer": a different option
    assert verify.same_labels_and_settings(front, [0, 2, 3], p, roles) == set()
