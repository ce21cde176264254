"""The Makefile as a user meets it: an unknown profile names the known ones, and a stage that fails leaves no
target behind (Make would otherwise take the stage for done)."""
from __future__ import annotations

import os
import subprocess

from lib import REPO_ROOT


def _make(*args, **env):
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), *args], capture_output=True,
                          text=True, env=os.environ | env, timeout=120)


def test_unknown_profile_lists_the_known_ones():
    r = _make("rms", "PROFILE=nope")
    assert r.returncode != 0
    known = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml"))
    assert f"unknown profile 'nope': there is no configs/nope.yaml; known profiles: {' '.join(known)}" in r.stderr


FAKE_PY = """#!/usr/bin/env bash
# stands in for the venv's python: `-m lib.core.pipeline --profile P NOTEBOOK` writes the notebook's target,
# then notebook 02 fails (as a notebook that wrote rms/index.csv and then raised would)
d="$PRC_ROOT/data/processed/smoke"
case "$5" in
  01_build_pref_lamp) mkdir -p "$d/preflamp" && echo '{}' > "$d/preflamp/manifest.json" ;;
  02_train_reward_models) mkdir -p "$d/rms" && printf x > "$d/rms/index.csv" && exit 1 ;;
esac
"""


def test_a_failed_stage_leaves_no_target(tmp_path):
    if not (REPO_ROOT / ".venv" / ".installed").exists():  # the order-only setup prerequisite would install
        import pytest

        pytest.skip("needs make setup")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    r = _make("rms", f"PY={fake}", f"DATA_ROOT={tmp_path}")
    assert r.returncode != 0, r.stdout + r.stderr
    d = tmp_path / "data" / "processed" / "smoke"
    assert (d / "preflamp" / "manifest.json").exists()  # 01 succeeded: its target stays
    assert not (d / "rms" / "index.csv").exists(), "a failed notebook 02 left rms/index.csv behind"
    assert "Deleting file" in r.stderr


FAKE_PIPELINE = """#!/usr/bin/env bash
# stands in for the venv's python: every notebook writes its Make target (notebook 06 a summary.md), the parameters
# files are written, and the results report runs for real
d="$PRC_ROOT/data/processed/smoke"
case "$*" in
  "-m lib.report.outputs"*) exec REAL_PY "$@" ;;
  *--write-params*) out="${@: -1}"; mkdir -p "$(dirname "$out")"; echo '{}' > "$out"; exit 0 ;;
esac
case "$5" in
  01_build_pref_lamp) f="$d/preflamp/manifest.json" ;;
  02_train_reward_models) f="$d/rms/index.csv" ;;
  03_reward_guided_decoding) f="$d/rgd/decodes.csv" ;;
  04_policy_accuracy) f="$d/eval/policy_accuracy.csv" ;;
  05_generation) f="$d/eval/generations.csv" ;;
  06_figures_tables) f="$PRC_ROOT/build/smoke/figures/summary.md" ;;
  *) echo "unexpected call: $*" >&2; exit 3 ;;
esac
mkdir -p "$(dirname "$f")" && echo "run" > "$f"
"""


def _git_status():
    return subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=all"],
                          capture_output=True, text=True, check=True).stdout


def test_make_all_leaves_the_committed_results_alone_and_reports_against_them(tmp_path):
    """`make all` writes git-ignored places only and ends with the comparison; `make refresh-results` is the one
    target that copies a run into figures/, the kept notebook outputs and the README."""
    import shutil
    import sys

    if not (REPO_ROOT / ".venv" / ".installed").exists():
        import pytest

        pytest.skip("needs make setup")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PIPELINE.replace("REAL_PY", sys.executable))
    fake.chmod(0o755)
    shutil.copytree(REPO_ROOT / "figures" / "smoke", tmp_path / "figures" / "smoke")  # the committed results
    before = _git_status()
    r = _make("all", f"PY={fake}", f"DATA_ROOT={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _git_status() == before, "make all changed files of the repository"
    assert (tmp_path / "build" / "smoke" / "figures" / "summary.md").read_text() == "run\n"
    assert "[results]" in r.stdout and "summary.md" in r.stdout and "make refresh-results PROFILE=smoke" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1].startswith("done: ")
    dry = _make("-n", "refresh-results", f"PY={fake}", f"DATA_ROOT={tmp_path}")
    assert "-m lib.report.outputs refresh --profile smoke" in dry.stdout
    assert "scripts/update_readme.py --profile smoke" in dry.stdout
    assert "refresh-results" in _make("help").stdout
