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
    unreadable = df[df.artifact.isin(["rms", "eval"])]
    assert len(unreadable) == 2 and not unreadable.ok.any()
    assert "index.csv" in unreadable.detail.iloc[0]
    assert not df.loc["exists", "ok"] and not df.loc["names the corpus", "ok"]
    assert sanity.main(["--profile", "p", "--root", str(tmp_path)]) == 1
