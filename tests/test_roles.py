"""The roles engineers balance by (issue 21): lead and backing vocals and the drum kit as separate
stems, guessed from the names engineers give their tracks, and ``--role`` (CLI) / ``roles=`` (API)
overriding each guess."""
import json

import numpy as np
import pytest
import soundfile as sf

import evomix.api as api
from evomix.choose.describe import describe
from evomix.engine.bands import band_grid
from evomix.engine.render import ExactRender, features_from_render
from evomix.errors import EvomixError, ParameterError
from evomix.io.audio import ROLES, guess_role, load_session
from tests.support import SR, run_cli, search_flags, sine, small_search

# ---------------------------------------------------------------- the name table

LEAD_VOCALS = [
    ("Lead Vox.wav", "vocal"),
    ("LeadVocal.wav", "vocal"),
    ("vocal_2.wav", "vocal"),  # a numbered lead is still the lead
    ("Vox1.wav", "vocal"),
    ("VOX.WAV", "vocal"),
    ("Vocal Main.flac", "vocal"),
    ("Adlibs.wav", "vocal"),
    ("Vox B.wav", "vocal"),  # take B of the vocal, not a backing vocal
    ("voxb.wav", "vocal"),
    ("Chorus Vox.wav", "vocal"),  # the lead in the chorus
    ("Subvox.wav", "vocal"),  # "bvox" inside another word is no backing vocal
]
BACKING_VOCALS = [
    ("BV 2.wav", "backing_vocal"),
    ("bv1.wav", "backing_vocal"),
    ("BVs.wav", "backing_vocal"),
    ("BGV.wav", "backing_vocal"),
    ("bgvs_L.wav", "backing_vocal"),
    ("BVox 2.wav", "backing_vocal"),
    ("bvox.wav", "backing_vocal"),
    ("BGVox.wav", "backing_vocal"),
    ("BKG Vox.wav", "backing_vocal"),
    ("vox_back.wav", "backing_vocal"),
    ("Backing Vocals.wav", "backing_vocal"),
    ("backing_vocals.wav", "backing_vocal"),
    ("BackingVox.wav", "backing_vocal"),
    ("Backings.wav", "backing_vocal"),
    ("Backing.wav", "backing_vocal"),
    ("Harmony.wav", "backing_vocal"),
    ("Harmonies 1.wav", "backing_vocal"),
    ("Vox Harm Hi.wav", "backing_vocal"),
    ("Harmony Vox.wav", "backing_vocal"),
    ("Choir.wav", "backing_vocal"),
    ("Choir Vox.wav", "backing_vocal"),
    ("Oohs.wav", "backing_vocal"),
    ("Aah.wav", "backing_vocal"),
    ("Vox Dbl.wav", "backing_vocal"),
    ("Lead Vox Double.wav", "backing_vocal"),  # a double of the lead sits under it
    ("Vocal Doubles L.wav", "backing_vocal"),
    ("Gang Vox.wav", "backing_vocal"),
]
DRUM_PARTS = [
    ("Kick In.wav", "kick"),
    ("kick_2.wav", "kick"),
    ("Bass Drum.wav", "kick"),
    ("BD808.wav", "kick"),
    ("Snare Top.wav", "snare"),
    ("Snare Bottom.wav", "snare"),  # "tom" inside "bottom" is no tom
    ("sn_bottom.wav", "snare"),
    ("Tom 1.wav", "toms"),
    ("Tom2.wav", "toms"),
    ("Floor Tom.wav", "toms"),
    ("FloorTom.wav", "toms"),
    ("Rack Tom 2.wav", "toms"),
    ("toms.wav", "toms"),
    ("HH.wav", "hihat"),
    ("Hi-Hat.wav", "hihat"),
    ("HiHat.wav", "hihat"),
    ("hihat.wav", "hihat"),
    ("Hats.wav", "hihat"),
    ("hat_open.wav", "hihat"),
    ("OH L.wav", "overheads"),
    ("OHs.wav", "overheads"),
    ("OHL.wav", "overheads"),
    ("Overheads.wav", "overheads"),
    ("overhead_r.wav", "overheads"),
    ("Drum OH.wav", "overheads"),
    ("Room.wav", "room"),
    ("Room Mics.wav", "room"),
    ("Drum Room.wav", "room"),
    ("RoomL.wav", "room"),
    ("Drum Amb.wav", "room"),
    ("Perc.wav", "percussion"),
    ("Perc 2.wav", "percussion"),
    ("Shaker.wav", "percussion"),
    ("Tambourine.wav", "percussion"),
    ("Tamb.wav", "percussion"),
    ("Congas.wav", "percussion"),
    ("Bongos.wav", "percussion"),
    ("Cowbell.wav", "percussion"),
    ("Drums.wav", "drums"),
    ("Drum Bus.wav", "drums"),
    ("Kit.wav", "drums"),
    ("Clap.wav", "drums"),  # a drum-machine part, as today
    ("Ride.wav", "drums"),
]
NOT_THESE = [  # names that must not become a backing vocal, a hat, a tom, overheads or room
    ("Harmonica.wav", "other"),
    ("Harmony Gtr.wav", "guitar"),  # a guitar harmony line
    ("Backing Gtr.wav", "guitar"),
    ("Backing Track.wav", "other"),  # an instrumental bed, not backing vocals
    ("Choir Pad.wav", "pad"),
    ("Synth Choir.wav", "synth"),
    ("Ambient Pad.wav", "pad"),
    ("Amb.wav", "other"),  # ambience without a drum word: not the drums' room
    ("Gtr Room.wav", "guitar"),  # a guitar's room mic
    ("Vocal Room.wav", "vocal"),
    ("Custom.wav", "other"),
    ("Atom.wav", "other"),
    ("Oh Baby Vox.wav", "vocal"),
    ("Whatever.wav", "other"),
    ("subtle.wav", "other"),
]
OTHER_ROLES = [
    ("bass_DI.flac", "bass"),
    ("Sub 1.wav", "bass"),
    ("808.wav", "bass"),
    ("Synth Bass.wav", "bass"),
    ("gtr-2.aiff", "guitar"),
    ("Rhodes.wav", "keys"),
    ("Piano L.wav", "piano"),
    ("Arp 2.wav", "synth"),
    ("Strings.wav", "pad"),
    ("Melody.wav", "lead"),
    ("FX Riser.wav", "fx"),
]
TABLE = LEAD_VOCALS + BACKING_VOCALS + DRUM_PARTS + NOT_THESE + OTHER_ROLES


@pytest.mark.parametrize("name, role", TABLE)
def test_guess_role_table(name, role):
    assert guess_role(name) == role


def test_the_table_covers_every_role_and_each_vocal_and_drum_part():
    assert len(TABLE) >= 40 and len({n for n, _ in TABLE}) == len(TABLE)  # no name twice
    guessed = {r for _, r in TABLE}
    assert guessed == set(ROLES), set(ROLES) - guessed
    assert len(LEAD_VOCALS) >= 5 and len(BACKING_VOCALS) >= 10
    for part in ("kick", "snare", "toms", "hihat", "overheads", "room", "percussion", "drums"):
        assert sum(r == part for _, r in DRUM_PARTS) >= 3, part


def test_guess_role_ignores_case_and_path():
    for name in ("bgv.wav", "BGV.WAV", "Bgv.Wav", "/sessions/song/BGV.wav", r"C:\sessions\BGV.wav"):
        assert guess_role(name) == "backing_vocal", name
    assert guess_role("/bvox/kick.wav") == "kick"  # only the file name counts


# ---------------------------------------------------------------- --role overrides every role

def _put(path, freq=440.0):
    x = sine(freq, 0.5)
    sf.write(path, np.stack([x, x]).T, SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def two_stems(tmp_path_factory):
    """A folder with "Lead Vox.wav" (guessed vocal) and "BGV 1.wav" (guessed backing_vocal)."""
    folder = tmp_path_factory.mktemp("roles")
    _put(folder / "Lead Vox.wav", 440.0)
    _put(folder / "BGV 1.wav", 660.0)
    return folder


def _guessed_other(role):
    """The file of ``two_stems`` whose guess is not ``role`` (so the override is seen)."""
    return "Lead Vox.wav" if role != "vocal" else "BGV 1.wav"


@pytest.mark.parametrize("role", ROLES)
def test_api_role_overrides_each_guess(two_stems, role):
    file = _guessed_other(role)
    assert guess_role(file) != role
    s = load_session([two_stems], roles={file: role})
    assert dict(zip(s.names, s.roles))[file[:-4]] == role
    other = "BGV 1" if file == "Lead Vox.wav" else "Lead Vox"
    assert dict(zip(s.names, s.roles))[other] == guess_role(other)  # the other stem keeps its guess


@pytest.mark.parametrize("given, role", [("Backing_Vocal", "backing_vocal"), ("backing-vocal", "backing_vocal"),
                                         ("BACKING VOCAL", "backing_vocal"), (" HiHat ", "hihat"),
                                         ("Overheads", "overheads")])
def test_api_role_accepts_case_and_separators(two_stems, given, role):
    s = load_session([two_stems], roles={"Lead Vox": given})
    assert s.roles[s.names.index("Lead Vox")] == role


def test_api_role_unknown_names_every_role(two_stems):
    with pytest.raises(ParameterError, match="choose from vocal, backing_vocal, drums, kick, snare, toms, hihat, "
                                             "overheads, room, percussion, bass, .*, other"):
        load_session([two_stems], roles={"Lead Vox": "hats"})


class _Stop(EvomixError):
    """Raised by the stand-in for ``api.mix`` once the session is loaded: the search is not the test."""


@pytest.mark.parametrize("role", ROLES)
def test_cli_role_overrides_each_guess(two_stems, tmp_path, monkeypatch, role):
    seen = {}

    def loaded(paths, *, roles=None, **_):
        s = load_session(paths, roles=roles)
        seen.update(zip(s.names, s.roles))
        raise _Stop("stopped after loading")

    monkeypatch.setattr(api, "mix", loaded)
    file = _guessed_other(role)
    res = run_cli("mix", two_stems, "--out", tmp_path / "out", "--role", f"{file}={role}", "--quiet")
    assert res.exit_code == 1 and "stopped after loading" in res.stderr, res.output
    assert seen[file[:-4]] == role
    other = "BGV 1" if file == "Lead Vox.wav" else "Lead Vox"
    assert seen[other] == guess_role(other)


def test_cli_role_end_to_end_reaches_the_front(two_stems, tmp_path):
    """A real (tiny) run: the roles given on the command line are the roles the front records."""
    out = tmp_path / "out"
    flags = search_flags(small_search(population=6, generations=1, alternatives=1))
    res = run_cli("mix", two_stems, "--out", out, *flags, "--quiet", "--role", "Lead Vox.wav=backing_vocal",
                  "--role", "BGV 1=vocal")
    assert res.exit_code == 0, res.output
    stems = json.loads((out / "front.json").read_text())["stems"]
    assert {n: s["role"] for n, s in stems.items()} == {"Lead Vox": "backing_vocal", "BGV 1": "vocal"}


# ---------------------------------------------------------------- "vocal" means the lead

def _describe(stems, roles):
    stems = np.stack([np.asarray(s, dtype=float) for s in stems])  # (stems, 2, n)
    r = ExactRender(mix=stems.sum(axis=0), stems=stems, raw_loudness_lufs=-20.0, normalise_db=0.0, limiter_gr_db=0.0)
    return {k: float(v[0]) for k, v in describe(features_from_render(r, band_grid(SR), roles)).items()}


def test_vocal_lu_measures_the_lead_never_a_backing_vocal():
    lead, bv = sine(440.0, 2.0, amp=0.1), sine(660.0, 2.0, amp=0.3)  # the backing vocal 9.5 dB louder
    st = [np.stack([lead, lead]), np.stack([bv, bv])]
    assert np.isnan(_describe(st, ("keys", "backing_vocal"))["vocal_lu"])  # no lead: no vocal level
    d = _describe(st, ("vocal", "backing_vocal"))["vocal_lu"]
    assert d < -9.0, d  # the quiet lead's share of the mix, not the louder backing vocal's
