"""A profile of real preference sets only (configs/tldr-real.yaml): its stages, its per-notebook parameters, and the
label checks that go beside every personalised number (length-only and position-only rules, worker agreement)."""
from __future__ import annotations

import math
import os
import subprocess

import pandas as pd
import pytest

from lib import REPO_ROOT
from lib.core import pipeline
from lib.core.config import load_profile, stages
from lib.report import markdown
from lib.rewards import rm_checks

ONLY_SETS = ("02_train_reward_models", "04_policy_accuracy", "06_figures_tables")


def _profile(tmp_path, text, name="mine"):
    (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def test_tldr_real_runs_only_the_preference_set_notebooks():
    assert stages(load_profile("tldr-real")) == ONLY_SETS
    assert pipeline.parameters_for("04_policy_accuracy", "tldr-real")["policies"] == ["smollm2-135m"]
    with pytest.raises(ValueError, match=r"runs only \['02_train_reward_models'.*not 01_build_pref_lamp"):
        pipeline.parameters_for("01_build_pref_lamp", "tldr-real")


@pytest.mark.parametrize("text, match", [
    ("stages: [02_train_reward_models, 06_figures_tables]\n", "'stages' must be one of"),
    ("stages:\n- 02_train_reward_models\n- 04_policy_accuracy\n- 06_figures_tables\n", "on one line"),
])
def test_bad_stages_name_the_file(tmp_path, text, match):
    d = _profile(tmp_path, text)
    with pytest.raises(ValueError, match=match) as e:
        load_profile("mine", d)
    assert str(d / "mine.yaml") in str(e.value)


def test_a_section_outside_the_stages_is_an_error(tmp_path):
    d = _profile(tmp_path, "stages: [02_train_reward_models, 04_policy_accuracy, 06_figures_tables]\n"
                           "notebooks: {05_generation: {queries_per_user: 1}, 02_train_reward_models: {tasks: []}}\n")
    with pytest.raises(ValueError, match=r"section\(s\) \['05_generation'\] belong to notebooks outside"):
        pipeline.parameters_for("02_train_reward_models", "mine", d)


def test_editing_one_section_rewrites_only_that_notebooks_parameters(tmp_path):
    d = _profile(tmp_path, "notebooks: {05_generation: {queries_per_user: 1}}\n")
    f4, f5 = tmp_path / "p" / "04.json", tmp_path / "p" / "05.json"
    assert pipeline.write_params("04_policy_accuracy", "mine", f4, d)
    assert pipeline.write_params("05_generation", "mine", f5, d)
    os.utime(f4, (1, 1)), os.utime(f5, (1, 1))
    _profile(tmp_path, "notebooks: {05_generation: {queries_per_user: 2}}\n")
    assert not pipeline.write_params("04_policy_accuracy", "mine", f4, d)  # 04's parameters did not change
    assert pipeline.write_params("05_generation", "mine", f5, d)
    assert f4.stat().st_mtime == 1 and f5.stat().st_mtime > 1
    assert '"queries_per_user": 2' in f5.read_text()


def test_make_runs_only_the_profiles_stages(tmp_path):
    if not (REPO_ROOT / ".venv" / ".installed").exists():
        pytest.skip("needs make setup")
    r = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO_ROOT), "all", "PROFILE=tldr-real",
                        f"DATA_ROOT={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ran = [ln.split()[-1] for ln in r.stdout.splitlines() if "lib.core.pipeline --profile" in ln]
    assert ran == list(ONLY_SETS), r.stdout
    smoke = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO_ROOT), "all",
                            f"DATA_ROOT={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert [ln.split()[-1] for ln in smoke.stdout.splitlines() if "lib.core.pipeline --profile" in ln] == \
        list(stages(load_profile("smoke")))


def _rec(user, split, chosen, rejected, position=None, prompt="post", group="seen"):
    r = {"pair_id": f"{user}/{split}/{chosen}", "user": user, "user_group": group, "split": split, "prompt": prompt,
         "chosen": chosen, "rejected": rejected}
    return r | ({"position": position} if position is not None else {})


def test_label_baselines_on_real_quirks():
    recs = [_rec("a", "train", "a long long summary", "short", 0), _rec("a", "train", "x", "y z", 0),
            _rec("a", "test", "one two", "three four", 1),  # a length tie: 0.5
            _rec("a", "test", "long one here", "short", 0),
            _rec("b", "test", "tiny", "much longer text", 0, group="unseen")]
    t = rm_checks.label_baselines(recs, "tldr").set_index("user_group")
    assert t.loc["seen", "length_acc"] == pytest.approx(0.75) and t.loc["seen", "length_ties"] == 1
    assert t.loc["seen", "position_acc"] == pytest.approx(0.5)  # majority train position 0
    assert t.loc["unseen", "length_acc"] == 0 and t.loc["unseen", "position_acc"] == 1
    no_pos = rm_checks.label_baselines([{k: v for k, v in r.items() if k != "position"} for r in recs], "prism")
    assert no_pos.position_acc.isna().all() and (no_pos.position_rule == "no position field").all()


def test_worker_agreement_weights_each_comparison_once():
    same = ("first summary", "second summary")
    recs = [_rec(u, "train", *same) for u in ("a", "b", "c")]  # three workers agree: 3 of 3 label pairs
    recs += [_rec("a", "test", "p", "q", prompt="post 2"), _rec("b", "train", "q", "p", prompt="post 2")]  # 0 of 1
    recs += [_rec("c", "test", "only", "once", prompt="post 3")]  # labelled once: not counted
    t = rm_checks.worker_agreement(recs, "tldr").iloc[0]
    assert t.comparisons == 2 and t.labels == 5
    assert t.agreement == pytest.approx(0.5)  # (1 + 0) / 2, not 3 / 4 label pairs
    assert t.ci_lo <= 0.5 <= t.ci_hi
    none = rm_checks.worker_agreement(recs[-1:], "tldr").iloc[0]
    assert none.comparisons == 0 and math.isnan(none.agreement)


def test_summary_of_a_profile_without_generation():
    tau = pd.DataFrame({"task": ["tldr"], "tau": [0.1]})
    text = markdown.summary_markdown("tldr-real", "none", ["smollm2-135m"], tau, None, None,
                                     label_checks={"worker_agreement": pd.DataFrame({"agreement": [0.64]})})
    assert "preference sets only (no Pref-LaMP)" in text and "ROUGE" not in text and "0.64" in text
    assert "synthetic users" not in text
