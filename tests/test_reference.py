"""Same-song reference: a rough mix of the stems with known gains is explained by the fit."""
import json

import numpy as np
import pytest
import soundfile as sf

import evomix
from evomix.engine.analysis import analyze_session
from evomix.io.audio import load_session
from evomix.tools.reference import fit_reference
from tests.support import SR, run_cli, search_flags, small_search, song_stems, write_stems


def _song(tmp_path, seed):
    """Five stems (drums, bass, keys, vocal, pad) and a reference mixed with known gains/pans."""
    rng = np.random.default_rng(seed)
    stems = song_stems(duration_s=4.0, seed=seed)
    t = np.arange(stems["bass"].shape[1]) / SR
    stems["pad"] = (0.1 * np.sin(2 * np.pi * 1230 * t) * (1 + np.sin(2 * np.pi * 0.3 * t)))[None].astype(np.float32)
    gains = dict(zip(stems, rng.uniform(-12, 12, size=len(stems))))  # +-12 dB spread
    pans = dict(zip(stems, rng.uniform(-0.6, 0.6, size=len(stems))))
    mix = np.zeros((2, t.size))
    for name, x in stems.items():
        th = (pans[name] + 1) * np.pi / 4
        if x.shape[0] == 1:  # constant-power pan
            y = np.vstack([x[0] * np.cos(th), x[0] * np.sin(th)])
        else:  # balance law
            y = x * np.array([[min(1, np.sqrt(2) * np.cos(th))], [min(1, np.sqrt(2) * np.sin(th))]])
        mix += 10 ** (gains[name] / 20) * y
    mix *= 0.5 / np.abs(mix).max()
    d = tmp_path / f"song{seed}"
    write_stems(d / "stems", stems)
    sf.write(d / "rough.wav", mix.T, SR, subtype="PCM_24")
    return d, gains, pans


def _relative_errors(recovered: dict, gains: dict) -> np.ndarray:
    names = list(gains)
    got = np.array([recovered[n]["gain_db"] for n in names])
    true = np.array([gains[n] for n in names])
    return (got - got.mean()) - (true - true.mean())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mix_with_reference_recovers_relative_gains(tmp_path, seed):
    d, gains, pans = _song(tmp_path, seed)
    result = evomix.mix([d / "stems"], reference=d / "rough.wav", search=small_search(generations=1))
    ref = result.reference
    assert ref["mode"] == "same-song", ref
    assert "reference" in result.names
    for key in ("fitted", "closest_member"):  # the fit, and the front member nearest the reference
        err = _relative_errors(ref[key], gains)
        assert np.abs(err).max() <= 1.5 and np.median(np.abs(err)) <= 0.75, f"{key}: errors {np.round(err, 2)} dB"
    pan_err = [ref["fitted"][n]["pan"] - pans[n] for n in gains]
    assert np.abs(pan_err).max() <= 0.15, f"pan errors {np.round(pan_err, 3)}"


def test_unrelated_track_is_not_the_same_song(tmp_path):
    d, _, _ = _song(tmp_path, 1)
    other = song_stems(duration_s=4.0, seed=9)  # a different arrangement of different material
    noise = np.random.default_rng(0).standard_normal((2, other["bass"].shape[1])) * 0.05
    sf.write(d / "other.wav", (np.roll(other["keys"], 5000, axis=1) * 0.5 + noise).T, SR, subtype="PCM_24")
    session = load_session(sorted((d / "stems").glob("*.wav")))
    analysis = analyze_session(session)
    same = fit_reference(d / "rough.wav", session, analysis)
    diff = fit_reference(d / "other.wav", session, analysis)
    assert same.same_song and not diff.same_song, (same.correlation, diff.correlation)


def test_reference_weight_without_reference_is_an_error(tmp_path, stem_dir):
    with pytest.raises(evomix.ParameterError, match="^weights: 'reference' needs reference ") as e:
        evomix.mix([stem_dir], weights="reference=2", search=small_search(population=4, generations=0))
    assert str(e.value.for_cli()).startswith("--weights: 'reference' needs --reference ")  # what the CLI prints


@pytest.mark.slow
def test_cli_reference_reports_recovered_gains(tmp_path):
    d, gains, _ = _song(tmp_path, 2)
    tiny = search_flags(small_search(population=4, generations=1))
    res = run_cli("mix", d / "stems", "--reference", d / "rough.wav", "--out", tmp_path / "o", *tiny, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    err = _relative_errors(summary["reference"]["fitted"], gains)
    assert np.abs(err).max() <= 1.5, err
    assert "reference" in summary["objectives"]
    res = run_cli("mix", d / "stems", "--reference", d / "rough.wav", "--reference-mode", "bogus",
                  "--out", tmp_path / "o2", *tiny)
    assert res.exit_code == 2 and "--reference-mode" in res.stderr  # a choice: typer refuses it (usage error)
    assert "'auto', 'same-song', 'style'" in " ".join(res.stderr.replace("│", " ").split())
