"""Tests for evomix.io.audio: reading, checking, loading and atomically writing audio."""
import os
import re

import numpy as np
import pytest
import soundfile as sf

from evomix.errors import AudioFileError, EvomixError, ParameterError
from evomix.io.audio import (
    AUDIO_SUFFIXES,
    LOSSY_SUBTYPES,
    ROLES,
    UNDECODABLE_SUFFIXES,
    Session,
    expand_paths,
    guess_role,
    load_session,
    read_audio,
    stem_names,
    write_audio,
)
from evomix.io.files import write_text_atomic
from tests.support import SR, sine


def put(path, x, sr=SR, subtype=None, fmt=None):
    """Write ``x`` of shape (channels, samples) or (samples,) with soundfile; return path."""
    x = np.asarray(x)
    data = x if x.ndim == 1 else x.T
    sf.write(path, data, sr, subtype=subtype, format=fmt)
    return path


def stereo(freq=440.0, dur=1.0, sr=SR, amp=0.5):
    s = sine(freq, dur, sr=sr, amp=amp)
    return np.stack([s, 0.5 * s])


def peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


def tmp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- guess_role

@pytest.mark.parametrize("name, role", [
    ("Lead Vox.wav", "vocal"),
    ("bass_DI.flac", "bass"),
    ("subtle_pad.wav", "pad"),
    ("Kick In.wav", "kick"),
    ("OH L.wav", "overheads"),  # was "drums" before the kit parts had roles (issue 21)
    ("gtr-2.aiff", "guitar"),
    ("LeadVocal.wav", "vocal"),
    ("BV 2.wav", "backing_vocal"),  # was "vocal": a backing vocal had the lead's role (issue 21)
    ("Snare Top.wav", "snare"),
    ("sn_bottom.wav", "snare"),
    ("Room Mics.wav", "room"),  # was "drums" (issue 21)
    ("Sub 1.wav", "bass"),
    ("808.wav", "bass"),
    ("Bass Drum.wav", "kick"),
    ("Synth Bass.wav", "bass"),
    ("Rhodes.wav", "keys"),
    ("Piano L.wav", "piano"),
    ("Arp 2.wav", "synth"),
    ("Strings.wav", "pad"),
    ("Lead Synth.wav", "synth"),
    ("Melody.wav", "lead"),
    ("FX Riser.wav", "fx"),
    ("Guitars.wav", "guitar"),
    ("VOX.WAV", "vocal"),
    ("subtle.wav", "other"),
    ("untitled 3.wav", "other"),
])
def test_guess_role(name, role):
    assert guess_role(name) == role


def test_guess_role_always_returns_a_known_role():
    for name in ["", "...", "a/b/c.wav", "x" * 300, "ÄÖÜ.wav"]:
        assert guess_role(name) in ROLES


# ---------------------------------------------------------------- expand_paths

def test_expand_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(AudioFileError, match=re.escape(f"{missing}: no such file or folder")):
        expand_paths([missing])


def test_expand_empty_folder(tmp_path):
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path}: no audio files")):
        expand_paths([tmp_path])


def test_expand_folder_with_only_text(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path}: no audio files (.wav")):
        expand_paths([tmp_path])


def test_expand_folder_filters_sorts_and_keeps_explicit_files(tmp_path):
    x = sine(440, 0.1)
    for n in ["b.WAV", "A.flac", "c.ogg", ".hidden.wav", "notes.txt", "d.aiff", "e.aif", "f.MP3", "g.opus",
              "data.json", ".DS_Store", "h.caf"]:
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "folder.wav").mkdir()  # a folder named like a stem is not one
    put(tmp_path / "sub" / "inner.wav", x)
    odd = put(tmp_path / "sub" / "odd.bin", x, fmt="WAV")
    got = expand_paths([tmp_path, str(odd)])
    assert [p.name for p in got] == ["A.flac", "b.WAV", "c.ogg", "d.aiff", "e.aif", "f.MP3", "g.opus", "h.caf",
                                     "odd.bin"]
    assert got[-1] == odd
    assert ".wav" in AUDIO_SUFFIXES


def test_stem_suffixes_are_every_format_libsndfile_decodes():
    available = sf.available_formats()
    assert {".wav", ".flac", ".aif", ".aiff", ".ogg"} <= set(AUDIO_SUFFIXES)
    assert (".mp3" in AUDIO_SUFFIXES) == ("MP3" in available)
    assert (".opus" in AUDIO_SUFFIXES) == ("OPUS" in sf.available_subtypes("OGG"))
    assert ".txt" not in AUDIO_SUFFIXES and ".json" not in AUDIO_SUFFIXES and ".raw" not in AUDIO_SUFFIXES
    assert not set(AUDIO_SUFFIXES) & set(UNDECODABLE_SUFFIXES)
    assert all(s == s.lower() and s.startswith(".") for s in AUDIO_SUFFIXES)


def _song_with_a_lossy_vocal(folder, fmt, subtype, suffix, sr):
    """Three WAV stems and a vocal in a lossy format; returns (the files, the vocal)."""
    folder.mkdir()
    files = [put(folder / f"{n}.wav", stereo(f, dur=1.0, sr=sr), sr=sr)
             for n, f in (("bass", 80.0), ("drums", 200.0), ("keys", 600.0))]
    vocal = put(folder / f"vocal{suffix}", stereo(1000.0, dur=1.0, sr=sr), sr=sr, fmt=fmt, subtype=subtype)
    (folder / "notes.txt").write_text("not a stem")
    return files + [vocal], vocal


@pytest.mark.parametrize("fmt, subtype, suffix, label", [
    ("MP3", "MPEG_LAYER_III", ".mp3", "MP3"),
    ("OGG", "VORBIS", ".ogg", "Ogg Vorbis"),
    ("OGG", "OPUS", ".opus", "Opus"),
])
def test_a_lossy_stem_is_a_stem_in_a_folder_as_by_name_with_a_warning(tmp_path, fmt, subtype, suffix, label):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    sr = 48000 if subtype == "OPUS" else SR  # Opus codes 48 kHz (and 8, 12, 16, 24)
    files, vocal = _song_with_a_lossy_vocal(tmp_path / "song", fmt, subtype, suffix, sr)
    by_folder, by_name = load_session([tmp_path / "song"]), load_session(files)
    assert by_folder.names == by_name.names == ("bass", "drums", "keys", "vocal")
    np.testing.assert_array_equal(by_folder.audio, by_name.audio)
    assert abs(peak_hz(by_folder.audio[3, 0], by_folder.sr) - 1000) < 5
    warning = f"{vocal}: lossy ({label}) source; its coding artefacts are part of every mix"
    for s in (by_folder, by_name):
        assert [w for w in s.warnings if "lossy" in w] == [w for w in s.warnings if w.startswith(warning)], s.warnings
        assert len([w for w in s.warnings if "lossy" in w]) == 1
    assert LOSSY_SUBTYPES[subtype] == label


def test_lossless_stems_get_no_lossy_warning(tmp_path):
    put(tmp_path / "a.flac", stereo(dur=0.3))
    put(tmp_path / "b.wav", stereo(dur=0.3), subtype="PCM_16")
    put(tmp_path / "c.aiff", stereo(dur=0.3), fmt="AIFF")
    assert load_session([tmp_path]).warnings == ()


def test_a_format_libsndfile_cannot_decode_is_refused_not_skipped(tmp_path):
    put(tmp_path / "bass.wav", stereo(dur=0.3))
    (tmp_path / "vocal.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    assert [p.name for p in expand_paths([tmp_path])] == ["bass.wav", "vocal.m4a"]
    msg = f"{tmp_path / 'vocal.m4a'}: AAC or ALAC (M4A) files cannot be decoded by libsndfile"
    for given in ([tmp_path], [tmp_path / "bass.wav", tmp_path / "vocal.m4a"]):  # the same in a folder and by name
        with pytest.raises(AudioFileError, match=re.escape(msg)):
            load_session(given)


def test_stem_names_are_the_session_names_without_reading_audio(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = put(tmp_path / "a" / "kick.wav", stereo(dur=0.3))
    b = put(tmp_path / "b" / "kick.wav", stereo(dur=0.3))
    put(tmp_path / "b" / "vox.flac", stereo(dur=0.3))
    given = [a, tmp_path / "b", b]
    assert stem_names(given) == list(load_session(given).names) == ["kick", "kick-2", "vox"]


# ---------------------------------------------------------------- symbolic links

def test_a_symbolic_link_loop_is_reported_as_such(tmp_path):
    loop = tmp_path / "vocal.wav"
    os.symlink(loop, loop)
    for call in (lambda: expand_paths([loop]), lambda: read_audio(loop), lambda: load_session([loop])):
        with pytest.raises(AudioFileError, match=re.escape(f"{loop}: is a symbolic link loop")):
            call()
    ring = tmp_path / "ring"  # a loop of two links
    os.symlink(tmp_path / "ring2", ring)
    os.symlink(ring, tmp_path / "ring2")
    with pytest.raises(AudioFileError, match=re.escape(f"{ring}: is a symbolic link loop")):
        expand_paths([ring])
    with pytest.raises(AudioFileError, match=re.escape(f"{ring / 'x.wav'}: cannot be reached: its path goes "
                                                       f"through a symbolic link loop")):
        expand_paths([ring / "x.wav"])


def test_a_loop_or_broken_link_named_like_a_stem_in_a_folder_is_reported(tmp_path):
    put(tmp_path / "bass.wav", stereo(dur=0.3))
    os.symlink(tmp_path / "vocal.wav", tmp_path / "vocal.wav")
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path / 'vocal.wav'}: is a symbolic link loop")):
        expand_paths([tmp_path])
    os.remove(tmp_path / "vocal.wav")
    os.symlink(tmp_path / "gone.wav", tmp_path / "vocal.wav")
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path / 'vocal.wav'}: is a broken symbolic link (to "
                                                       f"{tmp_path / 'gone.wav'}, which does not exist)")):
        expand_paths([tmp_path])
    os.remove(tmp_path / "vocal.wav")
    os.symlink(tmp_path / "notes.txt", tmp_path / "notes.txt")  # not named like a stem: skipped, as any text
    os.symlink(tmp_path / "bass.wav", tmp_path / "bass-link.wav")  # a working link is followed
    assert [p.name for p in expand_paths([tmp_path])] == ["bass-link.wav", "bass.wav"]


def test_a_broken_link_given_by_name(tmp_path):
    link = tmp_path / "vocal.wav"
    os.symlink(tmp_path / "gone.wav", link)
    for call in (lambda: expand_paths([link]), lambda: read_audio(link)):
        with pytest.raises(AudioFileError, match=re.escape(f"{link}: is a broken symbolic link")):
            call()


# ---------------------------------------------------------------- read_audio errors

def test_read_text_file_renamed_wav(tmp_path):
    p = tmp_path / "fake.wav"
    p.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioFileError, match=re.escape(f"{p}: not a readable audio file")):
        read_audio(p)


def test_read_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path / 'x.wav'}: no such file")):
        read_audio(tmp_path / "x.wav")
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path}: is a folder")):
        read_audio(tmp_path)


@pytest.mark.parametrize("suffix, fmt", [(".wav", "WAV"), (".aiff", "AIFF")])
def test_read_truncated_header_checked_formats(tmp_path, suffix, fmt):
    # libsndfile silently reads the frames present; we compare against the header.
    p = put(tmp_path / f"cut{suffix}", stereo(dur=0.5), subtype="PCM_16", fmt=fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert sf.info(p).frames < int(0.5 * SR)  # precondition: soundfile does not complain
    with pytest.raises(AudioFileError, match=re.escape(f"{p}: truncated: header declares 22050 frames")):
        read_audio(p)


def test_read_truncated_flac(tmp_path):
    p = put(tmp_path / "cut.flac", np.random.default_rng(1).uniform(-0.5, 0.5, (2, SR)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioFileError, match=re.escape(f"{p}: ")):
        read_audio(p)


def test_read_valid_wav_subtypes_pass_header_check(tmp_path):
    x = stereo(dur=0.1)
    for st in ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"]:
        p = put(tmp_path / f"{st}.wav", x, subtype=st)
        y, sr = read_audio(p)
        assert y.shape == x.shape and sr == SR
    mono = put(tmp_path / "odd.wav", sine(100, 0.1)[:4409], subtype="PCM_U8")  # odd data size
    assert read_audio(mono)[0].shape == (1, 4409)


@pytest.mark.parametrize("channels", [3, 6])
def test_read_too_many_channels(tmp_path, channels):
    p = put(tmp_path / f"surround{channels}.wav", np.zeros((channels, 1000)) + 0.1)
    with pytest.raises(AudioFileError,
                       match=re.escape(f"{p}: has {channels} channels; evomix takes mono or stereo")):
        read_audio(p)


def test_read_empty(tmp_path):
    p = put(tmp_path / "empty.wav", np.zeros((2, 0)))
    with pytest.raises(AudioFileError, match=re.escape(f"{p}: is empty")):
        read_audio(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_read_nan_or_inf(tmp_path, bad):
    x = stereo(dur=0.1)
    x[1, 100] = bad
    p = put(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=re.escape(f"{p}: contains NaN or infinite samples")):
        read_audio(p)


def test_read_returns_channels_first_float64(tmp_path):
    x = stereo(dur=0.2)
    y, sr = read_audio(put(tmp_path / "s.wav", x, subtype="FLOAT"))
    assert sr == SR and y.dtype == np.float64 and y.shape == (2, x.shape[1])
    np.testing.assert_allclose(y, x, atol=1e-7)
    m, _ = read_audio(str(put(tmp_path / "m.wav", x[0], subtype="FLOAT")))
    assert m.shape == (1, x.shape[1])


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("suffix", [".wav", ".flac", ".aif", ".aiff"])
def test_write_read_round_trip_24bit(tmp_path, suffix):
    x = stereo(dur=0.25, amp=0.9)
    x[0, 10], x[1, 11] = 1.0, -1.0  # full scale is allowed
    p = write_audio(tmp_path / f"out{suffix}", x, SR)
    assert p == tmp_path / f"out{suffix}"
    info = sf.info(p)
    assert info.subtype == "PCM_24"
    y, sr = read_audio(p)
    assert sr == SR and y.shape == x.shape
    assert np.max(np.abs(y - x)) < 1e-6
    assert tmp_files(tmp_path) == []


def test_write_mono_and_float_subtype(tmp_path):
    x = sine(1000, 0.1)[None, :]
    p = write_audio(str(tmp_path / "m.wav"), x, 48000, subtype="FLOAT")
    y, sr = read_audio(p)
    assert sr == 48000 and y.shape == (1, x.shape[1])
    np.testing.assert_allclose(y, x, atol=1e-7)


def test_ogg_read(tmp_path):
    x = stereo(freq=1000, dur=0.5)
    p = put(tmp_path / "v.ogg", x, fmt="OGG", subtype="VORBIS")
    y, sr = read_audio(p)
    assert sr == SR and y.shape == x.shape
    assert abs(peak_hz(y[0], SR) - 1000) < 5
    s = load_session([p])
    assert s.n_samples == x.shape[1] and s.names == ("v",)
    assert s.warnings[0].startswith(f"{p}: lossy (Ogg Vorbis) source")


def test_flac_aiff_ogg_in_one_session(tmp_path):
    put(tmp_path / "gtr.flac", stereo(dur=0.6))
    put(tmp_path / "keys.aiff", stereo(dur=0.6), fmt="AIFF")
    put(tmp_path / "pad.ogg", stereo(dur=0.6), fmt="OGG", subtype="VORBIS")
    s = load_session([tmp_path])
    assert s.names == ("gtr", "keys", "pad")
    assert s.roles == ("guitar", "keys", "pad")


# ---------------------------------------------------------------- write_audio errors

def test_write_refuses_nan(tmp_path):
    x = stereo(dur=0.1)
    x[0, 5] = np.nan
    out = tmp_path / "o.wav"
    with pytest.raises(ParameterError, match=re.escape(f"{out}: audio contains NaN")):
        write_audio(out, x, SR)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_over_full_scale(tmp_path):
    x = stereo(dur=0.1)
    x[1, 7] = 1.001
    out = tmp_path / "o.flac"
    with pytest.raises(ParameterError, match=re.escape(f"{out}: peak 1.001000 exceeds full scale")):
        write_audio(out, x, SR)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".mp4", ".ogg", ".mp3", ""])
def test_write_refuses_bad_suffix(tmp_path, suffix):
    out = tmp_path / f"o{suffix}"
    with pytest.raises(ParameterError,
                       match=re.escape(f"{out}: unsupported output format '{suffix}'; use .wav, .flac or .aiff")):
        write_audio(out, stereo(dur=0.1), SR)


@pytest.mark.parametrize("shape", [(44100, 2), (3, 100), (100,), (2, 0)])
def test_write_refuses_bad_shape(tmp_path, shape):
    with pytest.raises(ParameterError, match="shape \\(channels, samples\\)"):
        write_audio(tmp_path / "o.wav", np.zeros(shape), SR)


def test_write_refuses_bad_subtype_and_rate(tmp_path):
    with pytest.raises(ParameterError, match="subtype 'FLOAT' is not valid for FLAC"):
        write_audio(tmp_path / "o.flac", stereo(dur=0.1), SR, subtype="FLOAT")
    with pytest.raises(ParameterError, match="sample rate"):
        write_audio(tmp_path / "o.wav", stereo(dur=0.1), 0)


def test_write_is_atomic_and_replaces(tmp_path):
    out = tmp_path / "mix.wav"
    write_audio(out, stereo(dur=0.1, amp=0.1), SR)
    write_audio(out, stereo(dur=0.2, amp=0.2), SR)
    assert sf.info(out).frames == int(0.2 * SR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav"]
    mode = os.stat(out).st_mode & 0o777
    assert mode & 0o600 == 0o600


def test_write_failure_leaves_nothing_and_names_path(tmp_path):
    out = tmp_path / "missing_dir" / "mix.wav"
    with pytest.raises(AudioFileError, match=re.escape(f"{out}: cannot create")):
        write_audio(out, stereo(dur=0.1), SR)
    # destination is a folder: the rename fails, the temp file must be cleaned up
    d = tmp_path / "taken.wav"
    d.mkdir()
    with pytest.raises(AudioFileError, match=re.escape(f"{d}: cannot write")):
        write_audio(d, stereo(dur=0.1), SR)
    assert tmp_files(tmp_path) == []


def test_write_text_atomic(tmp_path):
    out = tmp_path / "report.json"
    assert write_text_atomic(out, '{"a": "é"}\n') == out
    write_text_atomic(str(out), '{"b": 2}\n')
    assert out.read_text(encoding="utf-8") == '{"b": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    with pytest.raises(AudioFileError, match=re.escape(f"{tmp_path / 'no' / 'r.json'}: cannot create")):
        write_text_atomic(tmp_path / "no" / "r.json", "x")
    with pytest.raises(ParameterError, match="must be a str"):
        write_text_atomic(out, b"bytes")


# ---------------------------------------------------------------- load_session

def test_load_session_basic_mono_duplicated(tmp_path):
    v = put(tmp_path / "Lead Vox.wav", sine(440, 1.0), subtype="FLOAT")
    k = put(tmp_path / "Kick In.wav", stereo(60, 1.0), subtype="FLOAT")
    s = load_session([tmp_path])
    assert isinstance(s, Session)
    assert s.names == ("Kick In", "Lead Vox")
    assert s.roles == ("kick", "vocal")
    assert s.paths == (k, v)
    assert s.sr == SR and s.n_stems == 2 and s.n_samples == SR
    assert s.duration_s == pytest.approx(1.0)
    assert s.audio.shape == (2, 2, SR) and s.audio.dtype == np.float32
    assert s.is_mono.tolist() == [False, True]
    np.testing.assert_array_equal(s.audio[1, 0], s.audio[1, 1])
    np.testing.assert_allclose(s.audio[1, 0], sine(440, 1.0), atol=1e-7)
    assert s.warnings == () and s.silent == ()
    with pytest.raises(ValueError):
        s.audio[0, 0, 0] = 1.0  # read-only


def test_load_session_different_lengths_padded(tmp_path):
    put(tmp_path / "a.wav", stereo(dur=1.0))
    put(tmp_path / "b.wav", stereo(dur=0.75))
    s = load_session([tmp_path])
    assert s.n_samples == SR
    assert np.all(s.audio[1, :, int(0.75 * SR):] == 0)
    assert np.any(s.audio[1, :, : int(0.75 * SR)] != 0)
    assert s.warnings == ()  # 0.75 s is not "short"


def test_load_session_short_stem_warns(tmp_path):
    put(tmp_path / "long.wav", stereo(dur=2.0))
    short = put(tmp_path / "hit.wav", stereo(dur=0.31))
    s = load_session([tmp_path])
    assert s.n_samples == 2 * SR
    assert f"{short}: only 0.31 s long; padded with silence to 2.00 s" in s.warnings


def test_load_session_one_silent_stem_kept(tmp_path):
    put(tmp_path / "a.wav", stereo(dur=0.5))
    q = put(tmp_path / "quiet.wav", np.full((2, SR // 2), 1e-7), subtype="FLOAT")
    s = load_session([tmp_path])
    assert s.names == ("a", "quiet") and s.silent == ("quiet",)
    assert any(w.startswith(f"{q}: silent") for w in s.warnings)


def test_load_session_all_silent(tmp_path):
    put(tmp_path / "a.wav", np.zeros((2, 1000)))
    put(tmp_path / "b.wav", np.zeros(1000))
    with pytest.raises(AudioFileError, match=re.escape("all stems are silent: a.wav, b.wav")):
        load_session([tmp_path])


def test_load_session_resamples_48k_to_majority(tmp_path):
    put(tmp_path / "a.wav", stereo(dur=1.0), subtype="FLOAT")
    put(tmp_path / "b.wav", stereo(dur=1.0), subtype="FLOAT")
    hi = put(tmp_path / "c.wav", sine(1000, 1.0, sr=48000), sr=48000, subtype="FLOAT")
    s = load_session([tmp_path])
    assert s.sr == 44100 and s.n_samples == 44100
    assert f"{hi}: resampled 48000 Hz -> 44100 Hz" in s.warnings
    assert abs(peak_hz(s.audio[2, 0].astype(np.float64), 44100) - 1000) < 2
    assert np.max(np.abs(s.audio[2, 0])) == pytest.approx(0.5, abs=0.02)


def test_load_session_rate_tie_goes_highest_and_explicit_sr(tmp_path):
    a = put(tmp_path / "a.wav", sine(1000, 0.5), subtype="FLOAT")
    b = put(tmp_path / "b.wav", sine(1000, 0.5, sr=48000), sr=48000, subtype="FLOAT")
    s = load_session([a, b])
    assert s.sr == 48000 and s.n_samples == 24000
    assert s.warnings == (f"{a}: resampled 44100 Hz -> 48000 Hz",)
    s2 = load_session([a, b], sr=22050)
    assert s2.sr == 22050 and s2.n_samples == 11025 and len(s2.warnings) == 2
    assert abs(peak_hz(s2.audio[1, 0].astype(np.float64), 22050) - 1000) < 4
    for bad in [0, -44100, 1.5, "44100", 10**7]:
        with pytest.raises(ParameterError, match="--sr:"):
            load_session([a], sr=bad)


def test_load_session_roles_override(tmp_path):
    put(tmp_path / "Lead Vox.wav", stereo(dur=0.5))
    b = put(tmp_path / "bass_DI.flac", stereo(dur=0.5))
    put(tmp_path / "thing.wav", stereo(dur=0.5))
    s = load_session([tmp_path], roles={"thing": "FX", "bass_DI.flac": "synth", str(tmp_path / "Lead Vox.wav"): "lead"})
    assert dict(zip(s.names, s.roles)) == {"Lead Vox": "lead", "bass_DI": "synth", "thing": "fx"}
    assert load_session([b], roles={str(b): "keys"}).roles == ("keys",)


def test_load_session_unknown_stem_name(tmp_path):
    put(tmp_path / "a.wav", stereo(dur=0.5))
    put(tmp_path / "b.wav", stereo(dur=0.5))
    with pytest.raises(ParameterError, match=re.escape("--role: no stem named 'x'; stems are a, b")):
        load_session([tmp_path], roles={"x": "vocal"})


def test_load_session_unknown_role(tmp_path):
    put(tmp_path / "a.wav", stereo(dur=0.5))
    msg = "--role: unknown role 'voc' for 'a'; choose from vocal, backing_vocal, drums, "
    with pytest.raises(ParameterError, match=re.escape(msg)):
        load_session([tmp_path], roles={"a": "voc"})


def test_load_session_duplicate_stem_names(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    k1 = put(tmp_path / "x" / "kick.wav", stereo(dur=0.5))
    k2 = put(tmp_path / "y" / "kick.wav", stereo(dur=0.5))
    k3 = put(tmp_path / "x" / "kick.flac", stereo(dur=0.5))
    s = load_session([k1, k2, k3], roles={"kick-3": "other"})
    assert s.names == ("kick", "kick-2", "kick-3")
    assert s.roles == ("kick", "kick", "other")
    assert any(w.startswith(f"{k2}:") and "'kick-2'" in w for w in s.warnings)
    with pytest.raises(ParameterError, match="matches several stems"):
        load_session([k1, k2], roles={"kick.wav": "bass"})


def test_load_session_same_file_twice_loaded_once(tmp_path):
    a = put(tmp_path / "a.wav", stereo(dur=0.5))
    put(tmp_path / "b.wav", stereo(dur=0.5))
    s = load_session([tmp_path, a])
    assert s.names == ("a", "b")
    assert f"{a}: given more than once; loaded once" in s.warnings


def test_load_session_errors_propagate_with_file_name(tmp_path):
    put(tmp_path / "ok.wav", stereo(dur=0.5))
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    with pytest.raises(AudioFileError, match=re.escape(f"{bad}:")):
        load_session([tmp_path])
    with pytest.raises(ParameterError, match="no stems given"):
        load_session([])


def test_errors_share_root():
    assert issubclass(AudioFileError, EvomixError) and issubclass(ParameterError, EvomixError)


def test_read_wav_cut_right_after_header_is_truncated_not_empty(tmp_path):
    p = put(tmp_path / "hdr.wav", stereo(dur=0.1), subtype="PCM_16")
    p.write_bytes(p.read_bytes()[:44])
    with pytest.raises(AudioFileError, match=re.escape(f"{p}: truncated: header declares 4410 frames but only 0")):
        read_audio(p)


def test_each_file_is_decoded_once_and_held_when_it_fits_the_budget(stem_dir, monkeypatch):
    import evomix.io.audio as audio_mod

    paths = sorted(stem_dir.glob("*.wav"))
    calls = []
    real = audio_mod.read_audio
    monkeypatch.setattr(audio_mod, "read_audio", lambda p, **kw: calls.append(p) or real(p, **kw))
    held = audio_mod.load_session(paths)
    assert held.audio is not None and held.audio.dtype == np.float32
    assert sorted(calls) == sorted(paths)  # once each
    calls.clear()
    monkeypatch.setattr(audio_mod, "hold_audio_budget_bytes", lambda: held.audio.nbytes - 1)  # one byte short
    streamed = audio_mod.load_session(paths)
    assert streamed.audio is None and sorted(calls) == sorted(paths)  # checked once each, not held
    np.testing.assert_array_equal(streamed.stem(0), held.stem(0))


def test_the_budget_is_a_share_of_the_available_memory(monkeypatch):
    import evomix.io.audio as audio_mod

    monkeypatch.setattr(audio_mod, "available_memory_bytes", lambda: 1 << 30)
    assert audio_mod.hold_audio_budget_bytes() == int(audio_mod.HOLD_AUDIO_FRACTION * (1 << 30))
    monkeypatch.setattr(audio_mod, "available_memory_bytes", lambda: 64 << 30)
    assert audio_mod.hold_audio_budget_bytes() == audio_mod.HOLD_AUDIO_MAX_BYTES  # capped


def test_available_memory_is_read_from_the_system():
    from evomix.io.audio import available_memory_bytes

    assert 64 << 20 < available_memory_bytes() < 1 << 50  # a real figure, in bytes
