"""Settings objects of evomix.mix: validated when made, Python names for Python callers, flags for the CLI."""
import dataclasses

import pytest
from typer.testing import CliRunner

from evomix import api
from evomix.cli import app
from evomix.errors import OptionError, ParameterError
from evomix.settings import Master, Parallel, Search, SettingError, cli_flag

runner = CliRunner()


@pytest.mark.parametrize("make, needle", [
    (lambda: Search(population=3), "Search.population must be >= 4"),
    (lambda: Search(population=8.0), "Search.population must be a whole number"),
    (lambda: Search(generations=-1), "Search.generations must be >= 0"),
    (lambda: Search(time_limit=0), "Search.time_limit must be > 0"),
    (lambda: Search(algorithm="cmaes"), "Search.algorithm must be one of"),
    (lambda: Search(seed=True), "Search.seed must be a whole number"),
    (lambda: Parallel(jobs=0), "Parallel.jobs must be >= 1"),
    (lambda: Parallel(backend="ray"), "Parallel.backend must be one of local, dask"),
    (lambda: Parallel(backend="dask"), "Parallel.scheduler is needed"),
    (lambda: Master(target_lufs=0.0), "Master.target_lufs must be <= -5.0"),
    (lambda: Master(ceiling_dbtp=float("nan")), "Master.ceiling_dbtp must be a finite number"),
    (lambda: Master(max_limiting_db=-1.0), "Master.max_limiting_db must be >= 0.0"),
])
def test_bad_settings_name_the_python_field(make, needle):
    with pytest.raises(SettingError, match=needle.replace(".", r"\.")):
        make()


def test_settings_are_frozen_and_map_to_flags():
    s = Search(seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 4
    assert cli_flag("time_limit") == "--time-limit" and cli_flag("ceiling_dbtp") == "--ceiling"
    e = SettingError("Search", "time_limit", "must be > 0, got 0")
    assert str(e.for_cli()) == "--time-limit must be > 0, got 0"


def test_mix_takes_objects_or_keywords_not_both(stem_dir):
    with pytest.raises(ParameterError, match="not both"):
        api.mix([stem_dir], search=Search(seed=1), population=8)
    with pytest.raises(ParameterError, match="search must be an evomix.settings.Search"):
        api.mix([stem_dir], search={"seed": 1})
    with pytest.raises(ParameterError, match=r"Search\.population"):  # a keyword is checked as its field
        api.mix([stem_dir], population=2)


def test_objects_and_keywords_give_the_same_front(stem_dir):
    a = api.mix([stem_dir], search=Search(population=8, generations=2, seed=4, alternatives=1),
                parallel=Parallel(threads=1), master=Master(target_lufs=-16.0))
    b = api.mix([stem_dir], population=8, generations=2, seed=4, alternatives=1, threads=1, target_lufs=-16.0)
    assert [m.objectives for m in a.front] == [m.objectives for m in b.front]
    assert a.target.target_lufs == -16.0


def test_cli_errors_name_flags(stem_dir, tmp_path):
    res = runner.invoke(app, ["mix", str(stem_dir), "--out", str(tmp_path / "o"), "--time-limit", "0", "--quiet"])
    assert res.exit_code == 1 and res.stderr.strip() == "evomix: error: --time-limit must be > 0, got 0.0", res.stderr
    res = runner.invoke(app, ["mix", str(stem_dir), "--out", str(tmp_path / "o"), "--algorithm", "x", "--quiet"])
    assert res.exit_code == 1 and "--algorithm must be one of nsga2, nsga3, random" in res.stderr
    res = runner.invoke(app, ["mix", str(stem_dir), "--out", str(tmp_path / "o"), "--max-limiting", "-1", "--quiet"])
    assert res.exit_code == 1 and res.stderr.strip() == "evomix: error: --max-limiting must be >= 0.0, got -1.0", res.stderr


def test_the_other_commands_name_python_keywords_for_python_and_flags_for_the_cli(stem_dir, tmp_path):
    """explore, vary and render (issue 12, item 10): a Python caller reads its keyword, a CLI user
    the command's flag, for the same bad value."""
    from evomix.tools.explore import explore
    from evomix.tools.vary import vary

    api.mix([stem_dir], population=4, generations=0, alternatives=1).write(tmp_path / "run")
    params = tmp_path / "run" / "alt-01.json"
    out = tmp_path / "exists.wav"
    out.write_bytes(b"")
    cases = [  # (Python call, its message, CLI arguments, the CLI's message)
        (lambda: explore([stem_dir], bins=1), "bins must be >= 2, got 1",
         ["explore", str(stem_dir), "--out", str(tmp_path / "e"), "--bins", "1"], "--bins must be >= 2, got 1"),
        (lambda: explore([stem_dir], time_limit=None), "give time_limit or iterations (or both)",
         None, None),
        (lambda: vary([params], [stem_dir], n=0), "n must be >= 1, got 0",
         ["vary", str(params), str(stem_dir), "--out", str(tmp_path / "v"), "-n", "0"], "-n must be >= 1, got 0"),
        (lambda: api.render(params, [stem_dir], out), f"out: {out} exists; pass force to replace it",
         ["render", str(params), str(stem_dir), "-o", str(out)], f"-o: {out} exists; pass --force to replace it"),
    ]
    for call, python_message, argv, cli_message in cases:
        with pytest.raises(OptionError) as e:
            call()
        assert str(e.value).startswith(python_message), str(e.value)
        assert "--" not in str(e.value).split(",")[0], str(e.value)
        if argv is not None:
            res = runner.invoke(app, argv)
            assert res.exit_code == 1 and res.stderr.startswith(f"evomix: error: {cli_message}"), res.stderr
