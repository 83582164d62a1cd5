"""Settings objects of evomix.mix: validated when made, Python names for Python callers, flags for the CLI."""
import dataclasses

import pytest
from typer.testing import CliRunner

from evomix import api
from evomix.cli import app
from evomix.errors import ParameterError
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
