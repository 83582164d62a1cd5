"""Settings objects of evomix.mix: validated when made, Python names for Python callers, flags for the CLI."""
import dataclasses

import pytest

from evomix import api
from evomix.cli import app
from evomix.errors import OptionError, ParameterError
from evomix.settings import Master, Parallel, Search, SettingError, cli_flag
from tests.support import run_cli


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


def test_mix_takes_settings_objects_only(stem_dir):
    for flat in ("population", "generations", "seed", "time_limit", "target_lufs", "ceiling_dbtp", "jobs", "threads"):
        with pytest.raises(TypeError, match=flat):  # one way to pass each setting: its settings object
            api.mix([stem_dir], **{flat: 1})
    with pytest.raises(ParameterError, match="search must be an evomix.settings.Search"):
        api.mix([stem_dir], search={"seed": 1})


SETTINGS_DEFAULTS = [  # (settings object, field, the mix command's flag)
    (Master, "target_lufs", "--target-lufs"), (Master, "ceiling_dbtp", "--ceiling"),
    (Master, "max_limiting_db", "--max-limiting"), (Search, "population", "--population"),
    (Search, "time_limit", "--time-limit"), (Search, "alternatives", "--alternatives"),
    (Search, "algorithm", "--algorithm"), (Search, "seed", "--seed"), (Parallel, "jobs", "--jobs"),
]


@pytest.mark.parametrize("cls, name, flag", SETTINGS_DEFAULTS)
def test_every_default_has_one_definition_that_the_cli_help_shows(cls, name, flag):
    """The default lives on the settings object; the CLI flag's default is that object's value,
    and ``mix --help`` prints it next to the flag."""
    import re

    import typer.main

    default = getattr(cls(), name)
    command = typer.main.get_command(app).commands["mix"]
    option = next(p for p in command.params if flag in p.opts)
    value = option.default.value if hasattr(option.default, "value") else option.default
    assert value == default, (flag, option.default, default)
    help_text = re.sub(r"\s+", " ", re.sub(r"\x1b\[[0-9;]*m|[│╭╮╰╯─]", " ", run_cli(*["mix", "--help"]).stdout))
    shown = str(default)
    assert re.search(re.escape(flag) + r"\b[^\[]*\[default: " + re.escape(shown) + r"\]", help_text), (flag, shown)


def test_no_module_above_the_engine_writes_a_setting_s_default_again():
    """A default of the target, ceiling, limiter budget, population or time limit is written on the
    settings objects only: no function of the pipeline, tools, outputs, search or CLI repeats it as
    a literal keyword default (the engine's DSP references take their own arguments)."""
    import ast
    import pathlib

    import evomix

    root = pathlib.Path(evomix.__file__).parent
    names = {"target_lufs", "ceiling_dbtp", "max_limiting_db", "population", "time_limit", "ceiling",
             "max_limiting", "budget_db", "alternatives"}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "settings.py" or "engine" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                a = node.args
                pos = a.posonlyargs + a.args
                pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
                found += [f"{path.name}:{node.lineno} {node.name}({arg.arg}={ast.unparse(d)})" for arg, d in pairs
                          if arg.arg in names and isinstance(d, (ast.Constant, ast.UnaryOp))
                          and not (isinstance(d, ast.Constant) and d.value is None)]
    assert not found, found


def test_cli_errors_name_flags(stem_dir, tmp_path):
    res = run_cli(*["mix", str(stem_dir), "--out", str(tmp_path / "o"), "--time-limit", "0", "--quiet"])
    assert res.exit_code == 1 and res.stderr.strip() == "evomix: error: --time-limit must be > 0, got 0.0", res.stderr
    res = run_cli(*["mix", str(stem_dir), "--out", str(tmp_path / "o"), "--algorithm", "x", "--quiet"])
    said = " ".join(res.stderr.replace("│", " ").split())  # typer boxes a usage error under CliRunner
    assert res.exit_code == 2 and "'x' is not one of 'nsga2', 'nsga3', 'random'" in said, said  # a choice: usage error
    res = run_cli("mix", stem_dir, "--out", tmp_path / "o", "--max-limiting", "-1", "--quiet")
    assert res.exit_code == 1, res.stderr
    assert res.stderr.strip() == "evomix: error: --max-limiting must be >= 0.0, got -1.0", res.stderr


def test_the_other_commands_name_python_keywords_for_python_and_flags_for_the_cli(stem_dir, tmp_path):
    """explore, vary and render (issue 12, item 10): a Python caller reads its keyword, a CLI user
    the command's flag, for the same bad value."""
    from evomix.tools.explore import explore
    from evomix.tools.vary import vary

    api.mix([stem_dir], search=Search(population=4, generations=0, alternatives=1)).write(tmp_path / "run")
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
            res = run_cli(*argv)
            assert res.exit_code == 1 and res.stderr.startswith(f"evomix: error: {cli_message}"), res.stderr
