"""`make artifacts`: scripts/pack_artifacts.py packs notebooks 01-05's outputs, leaving LaMP text out of real builds."""

import json
import subprocess
import sys
import tarfile

import pytest

from lib import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "pack_artifacts.py"


def _profile(root, corpus):
    d = root / "data" / "processed" / "p"
    for rel, text in {"preflamp/manifest.json": json.dumps({"corpus": corpus}), "preflamp/LaMP-4/pairs.jsonl": "{}\n",
                      "preflamp/LaMP-4/queries.jsonl": "{}\n", "prefsets/tldr/pairs.jsonl": "{}\n",
                      "prefsets/tldr/manifest.json": "{}", "rms/index.csv": "task\n", "rms/LaMP-4/bt/model.safetensors": "w",
                      "rgd/decodes.csv": "x\n", "eval/generations.csv": "x\n", "eval/policy_accuracy.csv": "x\n",
                      "eval/deployed_settings.csv": "x\n"}.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return d


def _run(root, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--profile", "p", "--root", str(root), *extra],
                          capture_output=True, text=True, timeout=120)


def _names(path):
    with tarfile.open(path) as t:
        return sorted(t.getnames())


def test_synthetic_profile_is_packed_whole(tmp_path):
    _profile(tmp_path, "synthetic")
    r = _run(tmp_path)
    assert r.returncode == 0, r.stderr
    got = _names(tmp_path / "build" / "artifacts-p.tar.gz")
    pre = "data/processed/p/"
    assert got == sorted(pre + x for x in ["preflamp/manifest.json", "preflamp/LaMP-4/pairs.jsonl",
                                           "preflamp/LaMP-4/queries.jsonl", "prefsets/tldr/pairs.jsonl",
                                           "prefsets/tldr/manifest.json", "rms/index.csv", "rms/LaMP-4/bt/model.safetensors",
                                           "rgd/decodes.csv", "eval/generations.csv", "eval/policy_accuracy.csv",
                                           "eval/deployed_settings.csv"])
    assert "left out" not in r.stdout


def test_real_lamp_profile_leaves_the_text_out_and_says_why(tmp_path):
    _profile(tmp_path, "lamp")
    r = _run(tmp_path, "--out", str(tmp_path / "a.tar.gz"))
    assert r.returncode == 0, r.stderr
    got = _names(tmp_path / "a.tar.gz")
    assert not [n for n in got if n.endswith(".jsonl")] and "data/processed/p/rms/LaMP-4/bt/model.safetensors" in got
    assert "data/processed/p/preflamp/manifest.json" in got
    assert "data/processed/p/eval/policy_accuracy.csv" in got and "data/processed/p/eval/deployed_settings.csv" in got
    assert "data/processed/p/rgd/decodes.csv" not in got and "data/processed/p/eval/generations.csv" not in got
    assert "left out (5 files" in r.stdout and "licenses" in r.stdout


def test_an_unbuilt_profile_is_an_error_and_writes_nothing(tmp_path):
    (tmp_path / "data" / "processed" / "p" / "preflamp").mkdir(parents=True)
    r = _run(tmp_path)
    assert r.returncode != 0 and "'rms/index.csv'] missing; build notebooks 01-02 first" in r.stderr
    assert not (tmp_path / "build").exists() or not list((tmp_path / "build").iterdir())


@pytest.mark.parametrize("text", ["not json", "{}"])
def test_a_manifest_without_corpus_names_the_file(tmp_path, text):
    d = _profile(tmp_path, "synthetic")
    (d / "preflamp" / "manifest.json").write_text(text)
    r = _run(tmp_path)
    assert r.returncode != 0 and "preflamp/manifest.json: no readable 'corpus' entry" in r.stderr


def test_make_help_lists_artifacts():
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), "help"], capture_output=True, text=True,
                       timeout=60)
    assert "artifacts" in r.stdout and "build/artifacts-PROFILE.tar.gz" in r.stdout
    assert "artifacts" in (REPO_ROOT / "Makefile").read_text().split(".PHONY:")[1].split("\n\n")[0]
