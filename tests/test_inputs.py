"""A notebook whose input is missing stops before any work, naming the file, its notebook and the artifacts route
(lib.core.config.require_inputs, called by apply_profile); the table it reads agrees with the Makefile."""
import json
import re
import sys
import tarfile

import pytest

from lib import REPO_ROOT
from lib.core import config, pipeline

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import pack_artifacts  # noqa: E402


def _built(root, corpus="synthetic"):
    """The outputs of notebooks 01-02 of profile smoke under ``root`` (tiny stand-ins)."""
    d = config.paths("smoke", root).processed
    files = {"preflamp/LaMP-4/pairs.jsonl": "{}\n", "preflamp/LaMP-4/queries.jsonl": "{}\n",
             "prefsets/tldr/pairs.jsonl": "{}\n", "rms/index.csv": "task\n"}
    manifest = {"corpus": corpus, "files": {"LaMP-4/pairs.jsonl": "x", "LaMP-4/queries.jsonl": "x"}}
    for rel, text in {**files, "preflamp/manifest.json": json.dumps(manifest)}.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return d


def test_nothing_built_names_each_missing_file_its_notebook_and_the_archive(tmp_path):
    lines = config.missing_inputs("03_reward_guided_decoding", "smoke", tmp_path)
    d = tmp_path / "data" / "processed" / "smoke"
    assert len(lines) == 2
    assert lines[0].startswith(f"{d / 'preflamp' / 'manifest.json'} is missing: notebook 01_build_pref_lamp writes it")
    assert lines[1].startswith(f"{d / 'rms' / 'index.csv'} is missing: notebook 02_train_reward_models writes it")
    for line, target in zip(lines, ("data", "rms")):
        assert f"`make {target} PROFILE=smoke`" in line and "`make artifacts PROFILE=smoke`" in line
        assert f"`tar xzf artifacts-smoke.tar.gz` in {tmp_path}" in line
    assert config.missing_inputs("01_build_pref_lamp", "smoke", tmp_path) == []


def test_what_the_archive_does_not_hold_names_only_its_notebook(tmp_path):
    _built(tmp_path)
    assert config.missing_inputs("04_policy_accuracy", "smoke", tmp_path) == []
    (line,) = config.missing_inputs("05_generation", "smoke", tmp_path)
    assert "eval/policy_accuracy.csv is missing: notebook 04_policy_accuracy writes it" in line
    assert "`make policy-accuracy PROFILE=smoke`" in line
    assert "that ran notebooks 01-04 writes build/artifacts-smoke.tar.gz" in line
    missing = config.missing_inputs("06_figures_tables", "smoke", tmp_path)
    assert [re.search(r"notebook (\S+) writes", m).group(1) for m in missing] == \
           ["03_reward_guided_decoding", "04_policy_accuracy", "05_generation"]


def test_a_profile_without_pref_lamp_does_not_ask_for_it(tmp_path):
    """tldr-real runs 02, 04 and 06: 02 needs nothing, 06 no Pref-LaMP, no decodes, no generations."""
    assert config.missing_inputs("02_train_reward_models", "tldr-real", tmp_path) == []
    missing = config.missing_inputs("06_figures_tables", "tldr-real", tmp_path)
    assert [re.search(r"notebook (\S+) writes", m).group(1) for m in missing] == \
           ["02_train_reward_models", "04_policy_accuracy"]


def test_an_unpacked_archive_lets_03_and_04_start(tmp_path):
    """The route the message names: `make artifacts` on a machine that ran 01-02, `tar xzf` at another root."""
    _built(tmp_path / "built")
    archive = tmp_path / "artifacts-smoke.tar.gz"
    pack_artifacts.pack("smoke", archive, tmp_path / "built")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert len(config.missing_inputs("03_reward_guided_decoding", "smoke", fresh)) == 2
    with tarfile.open(archive) as t:
        t.extractall(fresh, filter="data")
    assert config.missing_inputs("03_reward_guided_decoding", "smoke", fresh) == []
    assert config.missing_inputs("04_policy_accuracy", "smoke", fresh) == []


def test_an_archive_of_a_whole_run_lets_05_and_06_start(tmp_path):
    """Notebooks 02-06 can each start from an archive: 05 needs 04's scores, 06 every notebook's outputs."""
    d = _built(tmp_path / "built")
    for nb in ("03_reward_guided_decoding", "04_policy_accuracy", "05_generation"):
        (d / config.OUTPUTS[nb][0]).parent.mkdir(parents=True, exist_ok=True)
        (d / config.OUTPUTS[nb][0]).write_text("x\n")
    archive = tmp_path / "artifacts-smoke.tar.gz"
    pack_artifacts.pack("smoke", archive, tmp_path / "built")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert len(config.missing_inputs("06_figures_tables", "smoke", fresh)) == 5
    with tarfile.open(archive) as t:
        t.extractall(fresh, filter="data")
    for nb in ("05_generation", "06_figures_tables"):
        assert config.missing_inputs(nb, "smoke", fresh) == [], nb


def test_a_real_lamp_archive_without_lamp_text_says_to_rebuild_it(tmp_path):
    d = _built(tmp_path, corpus="lamp")
    (d / "preflamp" / "LaMP-4" / "queries.jsonl").unlink()  # what pack_artifacts leaves out of a real-LaMP build
    (line,) = config.missing_inputs("03_reward_guided_decoding", "smoke", tmp_path)
    assert "['LaMP-4/queries.jsonl'] missing although manifest.json lists them" in line
    assert "license" in line and "`make data PROFILE=smoke`" in line
    (d / "preflamp" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="manifest.json: no readable 'files' entry"):
        config.missing_inputs("03_reward_guided_decoding", "smoke", tmp_path)


def test_the_notebook_stops_at_its_import_cell(tmp_path, monkeypatch):
    """apply_profile (every notebook's import cell) raises before any work, with every missing file in one error."""
    monkeypatch.setenv("PRC_ROOT", str(tmp_path))
    ns = {k: eval(v) for k, v in pipeline.declared_parameters(pipeline.notebook_path("05_generation")).items()}
    with pytest.raises(FileNotFoundError) as e:
        pipeline.apply_profile(ns, "05_generation", verbose=False)
    msg = str(e.value)
    assert msg.startswith("notebook 05_generation (profile smoke) cannot start:")
    assert msg.count("\n  - ") == 3 and "04_policy_accuracy" in msg and str(tmp_path) in msg
    assert pipeline.apply_profile(dict(ns), "01_build_pref_lamp", verbose=False) == {}  # 01 reads nothing


def _makefile() -> tuple[dict, dict, dict]:
    """(variable -> file under data/processed/<profile>, variable -> make target, notebook -> (its variable,
    the variables it depends on)) read from the Makefile."""
    mk = (REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")
    files = dict(re.findall(r"^(\w+) := \$\(DATA\)/(\S+)$", mk, re.M))
    targets = {v: t for t, v in re.findall(r"^([\w-]+): \$\((\w+)\) ##", mk, re.M)}
    rules = {nb: (var, set(re.findall(r"\$\((" + "|".join(files) + r")\)", deps)))
             for var, nb, deps in re.findall(r"^\$\((\w+)\): notebooks/(\w+)\.ipynb(.*?)\| setup", mk, re.M)}
    return files, targets, rules


def test_the_inputs_table_agrees_with_the_makefile():
    files, targets, rules = _makefile()
    writes = {var: nb for nb, (var, _) in rules.items() if var in files}
    assert {nb: (files[v], targets[v]) for v, nb in writes.items()} == config.OUTPUTS

    def closure(nb, direct):
        seen, todo = set(), list(direct(nb))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(direct(n))
        return seen

    for nb in config.STAGES:
        make = closure(nb, lambda n: {writes[v] for v in rules[n][1]})
        assert closure(nb, lambda n: set(config.INPUTS.get(n, ()))) == make, nb


def test_the_archive_holds_what_the_message_promises():
    """Every notebook the message sends to `make artifacts` writes into a folder pack_artifacts packs."""
    for nb in config.ARCHIVED:
        assert config.OUTPUTS[nb][0].split("/")[0] in pack_artifacts.PACKED
    assert "02_train_reward_models" in config.ARCHIVED and "prefsets" in pack_artifacts.PACKED  # 02's inputs too
