"""lib is laid out as the pipeline: one sub-package per stage, and imports only run downhill.

Stages, lowest first: ``core`` (config, io, models, the KV cache, artifact schemas) < ``data`` (01) <
``rewards`` (02) < ``decoding`` (03) < ``evaluation`` (03-05) < ``report`` (06). A module may import its own
stage and the stages below it, never one above; no import circle anywhere, function-level imports included
(a lazy import hides a circle from Python's import machinery, not from a reader).
"""
from __future__ import annotations

import ast
from pathlib import Path

from lib import REPO_ROOT

LIB = REPO_ROOT / "lib"
STAGES = ("core", "data", "rewards", "decoding", "evaluation", "report")


def _module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str, root: Path) -> bool:
    p = root.parent.joinpath(*dotted.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def import_graph(root: Path = LIB) -> dict[str, set[str]]:
    """module -> the lib modules it imports (anywhere in the file), read with ast."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        mod = _module_of(path, root)
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = graph.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.split(".")[0] == "lib")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.split(".")[0] == "lib":
                    target = node.module
                else:
                    continue
                for a in node.names:  # `from pkg import module` imports the module, else a name of pkg
                    deps.add(f"{target}.{a.name}" if _is_module(f"{target}.{a.name}", root) else target)
        deps.discard(mod)
    return graph


def stage_of(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def upward_imports(graph) -> list[str]:
    bad = []
    for src, deps in graph.items():
        for dst in sorted(deps):
            s, d = stage_of(src), stage_of(dst)
            if d is None:
                continue  # the root package (REPO_ROOT) is below every stage
            if s is None and src != "lib":
                bad.append(f"{src} -> {dst}: a module outside the stage packages")
            elif s is None or STAGES.index(d) > STAGES.index(s):
                bad.append(f"{src} ({s or 'root'}) imports {dst} ({d}), a higher stage")
    return bad


def cycles(graph) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), as a sorted list."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_lib():
    found = cycles(import_graph())
    assert not found, "import circles in lib: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_only_run_downhill():
    bad = upward_imports(import_graph())
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_every_module_sits_in_a_stage():
    top = sorted(p.name for p in LIB.iterdir() if p.suffix == ".py" and p.name != "__init__.py")
    assert top == [], f"modules outside the stage packages: {top}"
    assert sorted(p.name for p in LIB.iterdir() if (p / "__init__.py").exists()) == sorted(STAGES)


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path):
    """The two checks on a toy package: a circle through a function-level import and data -> report."""
    lib = tmp_path / "lib"
    for d in ("", "core", "data", "report"):
        (lib / d).mkdir(exist_ok=True)
        (lib / d / "__init__.py").write_text("")
    (lib / "core" / "a.py").write_text("from . import b\n")
    (lib / "core" / "b.py").write_text("def f():\n    from .a import x\n")
    (lib / "data" / "c.py").write_text("from ..report import d\nfrom ..core import a\n")
    (lib / "report" / "d.py").write_text("")
    g = import_graph(lib)
    assert cycles(g) == [["lib.core.a", "lib.core.b"]]
    assert upward_imports(g) == ["lib.data.c (data) imports lib.report.d (report), a higher stage"]


OLD_NAMES = {"rgd": "lib.decoding.rgd", "evaluate": "lib.evaluation.generation", "results": "lib.report.results",
             "policy_acc": "lib.evaluation.policy_accuracy", "features": "lib.rewards.features",
             "models": "lib.core.models", "preflamp": "lib.data.preflamp"}

LEGACY = """
import importlib, json, sys, warnings
warnings.simplefilter("always")
out = {}
for old, new in json.loads(sys.argv[1]).items():
    with warnings.catch_warnings(record=True) as w:
        mod = importlib.import_module("lib." + old)
    out[old] = [mod is importlib.import_module(new), [str(x.message) for x in w]]
with warnings.catch_warnings(record=True) as w:
    from lib import sweep
    from lib.rgd_backends import make_backend
from lib.decoding.backends import make_backend as new_make_backend
from lib.evaluation import sweep as new_sweep
out["from"] = [sweep is new_sweep and make_backend is new_make_backend, [str(x.message) for x in w]]
try:
    from lib import no_such_module
    out["unknown"] = "imported"
except ImportError as e:
    out["unknown"] = type(e).__name__
print(json.dumps(out))
"""


def test_old_module_names_still_import_and_name_the_new_place():
    """A user's notebook that did ``from lib import rgd`` (or ``import lib.evaluate``) keeps working and is told
    where the module lives now; an unknown name is still an ImportError. In a fresh interpreter: the warning
    comes once per module and process, at its first import."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", LEGACY, json.dumps(OLD_NAMES)], capture_output=True, text=True,
                       cwd=REPO_ROOT, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for old, new in OLD_NAMES.items():
        same, messages = out[old]
        assert same, old
        assert any(f"lib.{old} moved to {new}" in m for m in messages), (old, messages)
    same, messages = out["from"]
    assert same and any("lib.decoding.backends" in m for m in messages) and any("lib.evaluation.sweep" in m
                                                                                  for m in messages), messages
    assert out["unknown"] == "ImportError"


def test_python_m_old_name_runs_the_new_module():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "lib.pipeline", "--help"], capture_output=True, text=True,
                       cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr
    assert "lib.pipeline moved to lib.core.pipeline" in r.stderr
    assert "usage" in r.stdout.lower()


def test_a_wheel_ships_every_stage():
    """``pip install .`` (not only the editable install of ``make setup``) must carry every stage package."""
    import tomllib

    from setuptools import find_packages

    find = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_packages(str(REPO_ROOT), include=find["include"]))
    assert {"lib", *(f"lib.{s}" for s in STAGES)} <= shipped, shipped
    assert not {p for p in shipped if not p.startswith("lib")}, shipped


def test_the_project_itself_uses_the_new_names():
    """The old flat names are for users' code; the project's own tests, scripts and notebooks import the stages."""
    import json

    from lib import MOVED

    sources = {p: p.read_text() for d in ("tests", "scripts", "lib") for p in (REPO_ROOT / d).rglob("*.py")
               if p.name != "test_layout.py"} | {p: "\n".join("".join(c["source"]) for c in json.loads(
                   p.read_text())["cells"] if c["cell_type"] == "code") for p in (REPO_ROOT / "notebooks").glob("*.ipynb")}
    old = []
    for path, src in sources.items():
        for node in ast.walk(ast.parse(src)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for m in mods:
                parts = m.split(".")
                if parts[0] == "lib" and len(parts) > 1 and parts[1] in MOVED:
                    old.append(f"{path.relative_to(REPO_ROOT)}: {m}")
            if isinstance(node, ast.ImportFrom) and node.module == "lib":
                old += [f"{path.relative_to(REPO_ROOT)}: from lib import {a.name}" for a in node.names if a.name in MOVED]
    assert not old, "old module names in the project: " + "; ".join(old)
