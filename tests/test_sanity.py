"""lib.report.sanity flags the degenerate artifacts a finished run must not hide."""
import json

from lib.core.io import write_jsonl
from lib.report import sanity


def _pair(user, split, chosen, rejected, prompt="Generate a headline for the following article: text", group="seen"):
    return {"pair_id": f"LaMP-4/{user}/{split}{chosen}", "task": "LaMP-4", "user": user, "user_group": group,
            "split": split, "prompt": prompt, "chosen": chosen, "rejected": rejected}


def test_check_run_flags_bad_pairs_and_missing_artifacts(tmp_path):
    pre = tmp_path / "data" / "processed" / "p" / "preflamp"
    write_jsonl(pre / "LaMP-4" / "pairs.jsonl", [
        _pair("a", "train", "Dogs win", "Cats win"), _pair("a", "test", "Rain Today", "rain  today"),  # identical
        _pair("b", "test", "Big news", "Small news", prompt="... Big news ...", group="unseen"),  # leak, no train
    ])
    (pre / "manifest.json").write_text(json.dumps({"corpus": "lamp", "params": {"tasks": ["LaMP-4"]}}))
    df = sanity.check_run("p", tmp_path).set_index("check")
    assert df.loc["has pairs", "ok"] and df.loc["seen and unseen users", "ok"]
    assert not df.loc["no pair with rejected == chosen", "ok"]
    assert not df.loc["no prompt contains its chosen text", "ok"]
    bad_user = df.loc["every user has a train and a test pair"]
    assert not bad_user.ok and bad_user.detail == "1 of 2 users lack one"
    unreadable = df[df.artifact.isin(["rms", "decodes", "policy_accuracy", "generations"])]
    assert len(unreadable) == 4 and not unreadable.ok.any()
    assert "index.csv" in unreadable.detail.iloc[0]
    assert not df.loc["exists", "ok"] and not df.loc["names the corpus", "ok"]
    assert sanity.main(["--profile", "p", "--root", str(tmp_path)]) == 1


def test_a_profile_without_pref_lamp_is_checked_on_what_it_runs(tmp_path):
    """tldr-real runs 02, 04 and 06: no Pref-LaMP, decodes or generations are asked for, and its summary must say
    that it has preference sets only."""
    fig = tmp_path / "build" / "q" / "figures"  # the run's figures (lib.core.config.Paths.figures)
    fig.mkdir(parents=True)
    (fig / "summary.md").write_text("_Profile **q**, preference sets only (no Pref-LaMP), policies a._\n")
    runs = ("02_train_reward_models", "04_policy_accuracy", "06_figures_tables")
    df = sanity.check_run("q", tmp_path, runs=runs)
    assert not set(df.artifact) & {"preflamp/manifest.json", "decodes", "generations"}
    assert set(df[~df.ok].artifact) == {"rms", "policy_accuracy"}  # not written in this fixture: reported, not skipped
    assert df.set_index("check").loc["names the corpus", "ok"]
    full = sanity.check_run("q", tmp_path, runs=None)  # no configs/q.yaml: every notebook's artifacts are asked for
    assert {"preflamp", "decodes", "generations"} <= set(full.artifact)
