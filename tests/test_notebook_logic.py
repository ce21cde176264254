"""What notebooks 01, 02 and 04 used to compute in their own cells, now in lib: the corpus of notebook 01, the
datasets, index and kept headline of notebook 02, the deployed settings artifact of notebook 04."""
import json

import pandas as pd
import pytest

from lib.core.config import paths
from lib.core.io import read_jsonl


# --- notebook 01: the corpus -------------------------------------------------------------------------------------
def test_prepare_corpus_writes_the_synthetic_corpus_and_returns_its_rules(tmp_path):
    from lib.data import lamp, synthetic

    rules = synthetic.prepare_corpus("synthetic", tmp_path, tasks=["LaMP-5"], n_users=4, profile_size=4, seed=3)
    assert list(rules.columns) == ["rule", "meaning"] and set(rules.rule) == set(synthetic.RULES)
    qs = lamp.load_task(tmp_path, "LaMP-5", "dev")  # the LaMP loader reads it
    assert len({q["id"] for q in qs}) == len(qs) > 0 and (tmp_path / "rules.json").exists()
    again = tmp_path / "again"
    synthetic.prepare_corpus("synthetic", again, tasks=["LaMP-5"], n_users=4, profile_size=4, seed=3)
    f = lamp.file_path(tmp_path, "LaMP-5", "dev", "questions")
    assert f.read_bytes() == lamp.file_path(again, "LaMP-5", "dev", "questions").read_bytes()


def test_prepare_corpus_lamp_lists_the_files_or_names_the_missing_one(tmp_path):
    from lib.data import lamp, synthetic

    with pytest.raises(FileNotFoundError, match=r"LaMP_4/dev/dev_questions.json.*or set download=True"):
        synthetic.prepare_corpus("lamp", tmp_path, tasks=["LaMP-4"])
    synthetic.write_synthetic_lamp(tmp_path, tasks=["LaMP-4"], n_users=3, profile_size=4)  # files in the layout
    files = synthetic.prepare_corpus("lamp", tmp_path, tasks=["LaMP-4"], split="dev")
    assert list(files.file) == ["LaMP_4/dev/dev_questions.json", "LaMP_4/dev/dev_outputs.json"]
    assert files.bytes.tolist() == [lamp.file_path(tmp_path, "LaMP-4", "dev", k).stat().st_size
                                    for k in ("questions", "outputs")]
    with pytest.raises(ValueError, match="corpus must be 'synthetic' or 'lamp', got 'LaMP'"):
        synthetic.prepare_corpus("LaMP", tmp_path)


# --- notebook 02: datasets, index, headline ----------------------------------------------------------------------
def test_load_datasets_writes_each_set_with_its_manifest_and_real_sets_win(tmp_path):
    from lib.data import synthetic_prefs
    from lib.rewards import rm_checks

    P = paths("q", tmp_path)
    real = tmp_path / "mine"  # a "real" TL;DR file placed by the user, named by a path relative to the data root
    synthetic_prefs.write_synthetic_prefsets(real, names=("tldr",), seed=5)
    data = rm_checks.load_datasets(P, [], ["tldr", "prism"], {"tldr": {"path": "mine/tldr"}}, seed=0)
    assert set(data) == {"tldr", "prism"}
    for name, recs in data.items():
        assert read_jsonl(P.prefsets / name / "pairs.jsonl") == recs
        man = json.loads((P.prefsets / name / "manifest.json").read_text())
        assert man["dataset"] == name and man["pairs"] == len(recs) and "drops" in man
    from lib.data import prefdata

    assert data["tldr"] == prefdata.load("tldr", path=str(real / "tldr"))  # the real set, not the synthetic one
    assert data["tldr"] != prefdata.load("tldr", path=str(P.raw / "synthetic_prefsets" / "tldr"))


def test_write_index_writes_what_later_notebooks_read_and_refuses_an_empty_zoo(tmp_path):
    from lib.rewards import rm_checks

    rows = [{"task": "t", "method": "bt", "backbone": "b", "seed": 0, "prefix_train": False, "dir": "t/x",
             "rm_acc_seen": 0.5}]
    index = rm_checks.write_index(rows, tmp_path)
    assert pd.read_csv(tmp_path / "index.csv").equals(index) and len(index) == 1
    with pytest.raises(ValueError, match="no reward model was trained"):
        rm_checks.write_index([], tmp_path / "empty")
    assert not (tmp_path / "empty" / "index.csv").exists()


def test_accuracy_headline_averages_every_configuration_per_dataset_group_and_method():
    from lib.rewards import rm_checks

    rows = []
    for task in ("d1", "d2"):
        for m in ("bt", "vpl"):
            for bb, prefix in (("a", False), ("a", True), ("b", False)):
                acc = 0.5 + 0.1 * (m == "vpl") + 0.01 * (bb == "b") + (0.2 if task == "d2" else 0)
                rows.append({"task": task, "method": m, "backbone": bb, "prefix_train": prefix, "seeds": 2,
                             "degenerate": int(task == "d1" and m == "bt" and prefix), "rm_acc_seen": acc,
                             "rm_acc_unseen": acc - 0.3})
    h = rm_checks.accuracy_headline(pd.DataFrame(rows))
    assert list(h.columns) == ["dataset", "user_group", "bt", "vpl", "cells", "flagged"]
    assert h[["dataset", "user_group"]].values.tolist() == [["d1", "seen"], ["d1", "unseen"], ["d2", "seen"],
                                                            ["d2", "unseen"]]
    assert h.bt.tolist() == pytest.approx([0.5 + 0.01 / 3, 0.2 + 0.01 / 3, 0.7 + 0.01 / 3, 0.4 + 0.01 / 3])
    assert h.vpl.iloc[0] == pytest.approx(0.6 + 0.01 / 3) and h.cells.tolist() == [6] * 4
    assert h.flagged.tolist() == [1, 1, 0, 0]
    one_cell = pd.DataFrame(rows)
    one_cell.loc[11, "rm_acc_seen"] += 1 / 72  # one pair of one seed of one configuration (36 pairs, 2 seeds) flips
    assert round(rm_checks.accuracy_headline(one_cell).vpl.iloc[2], 3) != round(h.vpl.iloc[2], 3)  # printed: moves


# --- notebook 04: the deployed settings artifact ------------------------------------------------------------------
def test_write_deployed_is_what_notebook_05_reads_back_and_checks(tmp_path):
    from lib.evaluation import deployment

    P = paths("q", tmp_path)
    dep = pd.DataFrame({"task": ["t"], "policy": ["p"], "rm": ["bt/p/s0"], "method": ["bt"], "method_pick": [True],
                        "w": [2.0], "w_decode": [2.5]})
    deployment.write_deployed(P, dep, calibrated=True, rgd_k=10, rm_backbones="policy")
    params = {"calibrated": True, "rgd_k": 10, "rm_backbones": "policy"}
    back = deployment.read_deployed(P, params)
    assert back.w_decode.tolist() == [2.5] and back.method_pick.tolist() == [True]
    with pytest.raises(ValueError, match="rgd_k=\\['10'\\], notebook 05 runs with rgd_k=5"):
        deployment.read_deployed(P, params | {"rgd_k": 5})
