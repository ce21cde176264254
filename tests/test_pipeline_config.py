"""Profiles (configs/<profile>.yaml) are checked before a notebook runs: every error names the file."""
import json

import pytest

from lib.core import io, pipeline
from lib.core.config import load_profile


def _write(tmp_path, text, profile="mine"):
    (tmp_path / f"{profile}.yaml").write_text(text)
    return tmp_path


def test_real_profiles_pass(tmp_path):
    for nb in ("01_build_pref_lamp", "04_policy_accuracy"):
        assert pipeline.parameters_for(nb, "smoke")["profile"] == "smoke"


@pytest.mark.parametrize("text, err, match", [
    ("common: [1, 2\n", ValueError, "not valid YAML"),
    ("- a\n- b\n", ValueError, "must be a mapping"),
    ("common: {profile: mine}\nnotebook: {}\n", ValueError, r"unknown top-level key\(s\) \['notebook'\]"),
    ("common: {profile: smoke}\n", ValueError, "common.profile is 'smoke' but the file is profile 'mine'"),
    ("common: 3\n", ValueError, "'common' must be a mapping"),
])
def test_bad_profile_files_name_the_file(tmp_path, text, err, match):
    d = _write(tmp_path, text)
    with pytest.raises(err, match=match) as e:
        load_profile("mine", d)
    assert str(d / "mine.yaml") in str(e.value)


@pytest.mark.parametrize("text, err, match", [
    ("common: {profile: mine, sed: 1}\n", KeyError, r"common key\(s\) \['sed'\] are declared by no notebook"),
    ("notebooks: {07_nothing: {a: 1}}\n", KeyError, "name no notebook"),
    ("notebooks: {01_build_pref_lamp: {taks: [LaMP-4]}}\n", KeyError, "sets \\['taks'\\]"),
    ("notebooks: {01_build_pref_lamp: {tasks: LaMP-4}}\n", TypeError, "tasks: 'LaMP-4' is a str"),
    ("notebooks: {01_build_pref_lamp: {max_new_tokens: twenty}}\n", TypeError, "max_new_tokens: 'twenty' is a str"),
    ("notebooks: {04_policy_accuracy: {calibrated: 1}}\n", TypeError, "calibrated: 1 is a int"),
])
def test_bad_parameters_are_errors_before_anything_runs(tmp_path, text, err, match):
    d = _write(tmp_path, text)
    nb = "04_policy_accuracy" if "04_" in text else "01_build_pref_lamp"
    with pytest.raises(err, match=match) as e:
        pipeline.parameters_for(nb, "mine", d)
    assert "mine.yaml" in str(e.value)


def test_a_name_or_a_list_where_the_default_is_a_name(tmp_path):
    d = _write(tmp_path, "notebooks: {04_policy_accuracy: {rm_backbones: [minilm-l6], max_pairs_per_group: 50},\n"
                         "            05_generation: {rm_backbones: [minilm-l6]}}\n")
    p = pipeline.parameters_for("04_policy_accuracy", "mine", d)
    assert p["rm_backbones"] == ["minilm-l6"] and p["max_pairs_per_group"] == 50


def test_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"a": 1}) + "\n" + json.dumps([1, 2]) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl: line 2: expected a JSON object"):
        io.read_jsonl(f)


def test_apply_profile_fills_defaults_and_keeps_hand_edits(tmp_path, capsys):
    """Outside Make (Colab): profile = "mine" in the parameters cell takes configs/mine.yaml's values for every
    parameter still at its default; a value edited by hand is kept; smoke changes nothing."""
    d = _write(tmp_path, "common: {profile: mine, seed: 3}\n"
                         "notebooks: {01_build_pref_lamp: {min_profile: 2, max_users: 7, rejected: policy}}\n")
    ns = {"profile": "mine", "seed": 0, "min_profile": 4, "max_users": 50, "rejected": "other_rule", "split": "dev"}
    changed = pipeline.apply_profile(ns, "01_build_pref_lamp", configs_dir=d)
    assert changed == {"seed": 3, "min_profile": 2, "rejected": "policy"}
    assert ns["max_users"] == 50 and ns["split"] == "dev"  # edited by hand (default None) / not in the config
    assert "min_profile=2" in capsys.readouterr().out
    smoke = {"profile": "smoke", "seed": 0, "min_profile": 4, "rejected": "other_rule"}
    assert pipeline.apply_profile(dict(smoke), "01_build_pref_lamp") == {}
