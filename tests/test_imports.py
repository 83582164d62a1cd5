"""Import structure (issue 11, item 7): no import cycle between ``evomix`` and ``objectives``.

Every module of both packages imports first, on its own, in an interpreter that has imported no
module of either package yet; all of them import in reverse order in one interpreter; and the
contract layer ``evomix.core`` imports neither ``evomix.engine`` nor ``objectives``. The child
interpreters get this process's ``sys.path``, so they test this copy of the code.
"""
import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest

SHIMS = ("objectives.meter",)  # old paths kept for callers outside the packages
EVOMIX_INIT = importlib.util.find_spec("evomix").origin  # found, not imported: this process stays out of it


def _walk(name: str, folder: str):
    """``name`` and every module below it, from the files in ``folder`` (nothing is imported)."""
    yield name
    for info in pkgutil.iter_modules([folder]):
        if info.ispkg:
            yield from _walk(f"{name}.{info.name}", os.path.join(folder, info.name))
        elif info.name != "__main__":  # evomix.__main__ runs the command line when imported (python -m evomix)
            yield f"{name}.{info.name}"


MODULES = sorted(m for pkg in ("evomix", "objectives")
                 for m in _walk(pkg, importlib.util.find_spec(pkg).submodule_search_locations[0]))


def _run(code: str):
    """Run ``code`` in a fresh interpreter with this process's sys.path; it must succeed and print
    JSON on its last line, which is returned."""
    prelude = f"import sys\nsys.path[:] = {sys.path!r}\n"
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_modules_are_found():
    assert {"evomix.core.features", "evomix.engine.batch", "objectives.base"} <= set(MODULES)  # guard: the walk works


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="one interpreter per module needs fork to stay fast")
def test_each_module_imports_first_in_a_fresh_interpreter():
    # One child interpreter loads the third-party libraries, then forks once per module: each fork
    # starts with no module of evomix or objectives loaded and imports its module first (a
    # subprocess per module would spend ~1 s each re-importing numpy and scipy).
    failed = _run(f"""
        import importlib, json, os, traceback
        # shared by the forks
        import deap, numpy, rich, scipy.fft, scipy.ndimage, scipy.optimize, scipy.signal, soundfile, typer
        assert not [m for m in sys.modules if m.split(".")[0] in ("evomix", "objectives")]
        failed = {{}}
        for name in {MODULES!r}:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: import one module first, report a traceback on failure
                os.close(read)
                try:
                    importlib.import_module(name)
                    code = 0
                except BaseException:
                    os.write(write, traceback.format_exc().encode())
                    code = 1
                os._exit(code)
            os.close(write)
            with os.fdopen(read) as f:
                message = f.read()
            if os.waitpid(pid, 0)[1] != 0:
                failed[name] = message
        print(json.dumps(failed))
    """)
    assert not failed, "\n".join(f"{name} imported first fails:\n{tb}" for name, tb in failed.items())


def test_all_modules_import_in_reverse_order_and_none_uses_a_shim():
    path, used = _run(f"""
        import importlib, json
        for name in {[m for m in reversed(MODULES) if m not in SHIMS]!r}:
            importlib.import_module(name)
        used = [m for m in {SHIMS!r} if m in sys.modules]  # no module of the packages imports an old path
        for name in {SHIMS!r}:
            importlib.import_module(name)
        print(json.dumps([sys.modules["evomix"].__file__, used]))
    """)
    assert path == EVOMIX_INIT  # the child tested this copy
    assert not used, f"imported by a module of evomix or objectives: {used}"


@pytest.mark.parametrize("layer, forbidden", [
    ("evomix.core", ("evomix.engine", "objectives")),  # the leaf: neither side
    ("evomix.engine", ("objectives",)),  # the engine reaches objectives' contract through the leaf only
    ("objectives", ("evomix.engine",)),  # and objectives never reaches into the engine
])
def test_a_layer_does_not_import_the_other_side(layer, forbidden):
    names = [m for m in MODULES if (m == layer or m.startswith(layer + ".")) and m not in SHIMS]
    loaded = _run(f"""
        import importlib, json
        for name in {names!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("evomix", "objectives"))))
    """)
    assert len(names) > 1 and set(names) <= set(loaded)  # guard: the layer's modules were imported
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not bad, f"importing {layer} loads {bad}"
    if layer == "evomix.core":  # the leaf loads nothing of ours but itself and evomix.errors (a leaf too)
        assert set(loaded) <= {"evomix", "evomix.errors", *names}, loaded


# The layers, lowest first: a module imports only from its own layer or below, at the top of the file
# or inside a function alike (an import inside a function is an edge all the same: it is taken at run
# time). The longest matching prefix decides a module's layer.
LAYERS = (
    ("evomix", "evomix.errors", "evomix.core", "evomix.progress", "objectives"),  # the leaf contract
    ("evomix.io", "evomix.search.genome"),  # audio in and out; the gene table and Params the engine renders
    ("evomix.engine",),  # analysis, fast tier, exact tier
    ("evomix.tools.measure", "evomix.tools.profile", "evomix.tools.reference",  # measuring audio files
     "evomix.output.report_data"),  # and the report's measurements, taken while the mix is made
    ("evomix.search", "evomix.settings"),  # problem, algorithm, checkpoints; the settings objects
    ("evomix.choose",),  # descriptors, picks, exact verification
    ("evomix.output",),  # result, report, exports
    ("evomix.pipeline",),  # the named stages
    ("evomix.tools",),  # rank, vary, explore: built on the pipeline
    ("evomix.testing", "evomix.demo"),  # the song synthesizer and the demo
    ("evomix.api",),  # the front door
    ("evomix.cli", "evomix.__main__"),
)
# An import inside a function only defers a heavy or optional dependency; each says why.
DEFERRED = {
    "evomix.api": "evomix/__init__ loads the API on first use: `import objectives` runs it first",
    "matplotlib": "the figures only: ~0.5 s to import",
    "ribs": "explore only",
    "distributed": "an optional extra (evomix[dask])",
    "joblib": "worker pools: only with --jobs > 1",
    "numba": "compiled kernels, imported where first used",
    "scipy": "scipy.signal and friends: ~0.3 s to import, only on the paths that filter",
    "rich": "progress bars on a terminal only",
    "signal": "the local pool's worker initialiser",
    "threading": "the local pool's worker initialiser",
}


def _layer(module: str) -> int | None:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def _edges(path: str, module: str):
    """(line, imported module, inside a function) for every import of ``path``; ``from A import b``
    yields ``A.b`` when that is a module of ours, else ``A``."""
    import ast

    tree = ast.parse(open(path).read())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [f"{node.module}.{a.name}" if importlib.util.find_spec(node.module).submodule_search_locations
                       and importlib.util.find_spec(f"{node.module}.{a.name}") else node.module for a in node.names]
        else:
            continue
        for t in targets:
            yield node.lineno, t, id(node) in inside


def _module_files():
    for m in MODULES:
        spec = importlib.util.find_spec(m)
        yield m, spec.origin


def test_every_import_goes_down_the_layers_inside_functions_too():
    wrong = []
    for module, path in _module_files():
        me = _layer(module)
        assert me is not None, f"{module} has no layer in LAYERS"
        for line, target, _ in _edges(path, module):
            if target.split(".")[0] in ("evomix", "objectives") and target != "evomix.__version__":
                there = _layer(target)
                if there is not None and there > me and DEFERRED.get(target) is None:
                    wrong.append(f"{module}:{line} (layer {me}) imports {target} (layer {there})")
    assert not wrong, "\n".join(wrong)


def test_an_import_inside_a_function_defers_a_heavy_or_optional_dependency():
    wrong = []
    for module, path in _module_files():
        for line, target, inside in _edges(path, module):
            if inside and not any(target == d or target.startswith(d + ".") for d in DEFERRED):
                wrong.append(f"{module}:{line} imports {target} inside a function")
    assert not wrong, "\n".join(wrong)
