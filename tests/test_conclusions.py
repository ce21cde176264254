"""lib/report/conclusions.py: the closing texts of notebooks 02, 04 and 05 and the paper-vs-run table say what the
tables passed in hold (numbers, counts, the cells that are too small), and change when those tables change."""
import math

import pandas as pd
import pytest

from lib.report import conclusions as C


def _acc():
    """Two datasets x one backbone x two methods; bt is the better method on d2."""
    rows = []
    for task, accs in (("d1", {"bt": 0.50, "vpl": 0.90}), ("d2", {"bt": 0.70, "vpl": 0.60})):
        for m, a in accs.items():
            rows.append({"task": task, "method": m, "backbone": "b", "prefix_train": False, "seeds": 2,
                         "degenerate": 1 if (task, m) == ("d2", "vpl") else 0, "rm_acc_seen": a, "ci_lo_seen": a - 0.1,
                         "ci_hi_seen": a + 0.1, "rm_acc_unseen": a, "ci_lo_unseen": a - 0.2, "ci_hi_unseen": a + 0.2})
    return pd.DataFrame(rows)


def test_rm_conclusion_reads_the_spread_the_gaps_and_the_flags_from_the_table():
    text = C.rm_conclusion(_acc(), "synthetic")
    assert "(seen users, test pairs; over 2 datasets, 1 backbone and" in text
    assert "spans 0.60 (bt) to 0.75 (vpl)" in text  # method means over the datasets
    assert "up to 40 points (d1, b: vpl 0.90 vs bt 0.50)" in text
    assert "1 of 2 such cells have a gap of 20 points or more" in text
    assert "`bt` is the best method in 1 of 2 cells" in text
    assert "1 of 8 trained seeds are flagged" in text and "spans 20 points" in text  # median CI width 0.2
    assert "What it cannot show" in text and "not the paper's numbers" in text
    real = C.rm_conclusion(_acc().assign(degenerate=0), "lamp")
    assert "None of the 8 trained seeds" in real and "synthetic" not in real and "corpus `lamp`" in real


def _taus():
    base = {"policy": "p", "n": 24, "n_users": 8, "p_exact": math.nan, "n_degenerate": 0, "n_excluded": 0}
    return pd.DataFrame([
        base | {"task": "a", "definition": "rgd_likelihood_smoothed", "level": "rm", "n_pairs": 30, "tau": 0.2,
                "ci_lo": 0.1, "ci_hi": 0.5, "status": ""},
        base | {"task": "b", "definition": "rgd_likelihood_smoothed", "level": "rm", "n_pairs": 40, "tau": -0.4,
                "ci_lo": -0.7, "ci_hi": 0.1, "status": ""},
        base | {"task": "c", "definition": "rgd_likelihood_smoothed", "level": "rm", "n_pairs": 12, "tau": math.nan,
                "ci_lo": math.nan, "ci_hi": math.nan, "status": "too small: 12 pairs < 20"},
        base | {"task": "a", "definition": "rgd_likelihood", "level": "rm", "n_pairs": 30, "tau": math.nan,
                "ci_lo": math.nan, "ci_hi": math.nan, "status": "undefined: constant policy accuracy"},
    ])


def _deployed():
    return pd.DataFrame({"task": ["a"] * 4 + ["b"] * 2, "policy": "p", "rm": list("uvwxyz"),
                         "w": [0, 0, 0, 1, 2, 0]})


def test_policy_conclusion_counts_cells_compares_with_the_paper_and_names_w_zero():
    text = C.policy_conclusion(_taus(), _deployed(), "synthetic")
    assert "2 of 4 tau cells" in text and "1 are below the minimum sizes" in text and "1 undefined" in text
    assert "a/p +0.20 [+0.10, +0.50]; b/p -0.40 [-0.70, +0.10]" in text
    assert "1 of 2 inside the paper's 0.08-0.31" in text and "includes 0 in 1 of 2" in text
    assert "The deployed w is 0 for 4 of 6 reward models, most of them on a/p (3 of 4)" in text
    assert "The largest test half has 40 pairs" in text
    none = C.policy_conclusion(_taus().assign(status="too small: 1 pairs < 20", tau=math.nan), _deployed(), "lamp")
    assert "0 of 4 tau cells" in none and "says nothing about the paper's 0.08-0.31" in none
    assert "most cells here are too small" in none


def _gap():
    return pd.DataFrame({"task": ["t1", "t2", "t1"], "model": ["big", "big", "small"], "icl_k": [1, 2, 1],
                         "rgd_rm": [None, "bt/x", None], "rgd_w": [0.0, 2.0, 0.0], "n_queries": 12, "n_users": 6,
                         "icl_minus_rgd_points": [5.0, -1.0, 2.0], "ci_lo": [1.0, -9.0, -4.0],
                         "ci_hi": [9.0, 6.0, 8.0]})


def _best(big_m=270):
    return pd.DataFrame({"task": "t1", "model": ["big", "small"], "params_m": [big_m, 135], "system": "icl"})


def test_generation_conclusion_reads_gaps_base_wins_and_the_size_limit():
    sel = pd.DataFrame({"rm": ["a", "b", "c"], "w_selected": [0.0, 2.0, 4.0]})
    text = C.generation_conclusion(_gap(), sel, _best(), "synthetic")
    assert "ahead of the best RGD in 2 of 3" in text and "CI above 0 in 1 (below 0 in 0)" in text
    assert "(big, 270M): t1 +5.0 [+1.0, +9.0]; t2 -1.0 [-9.0, +6.0]" in text
    assert "base policy itself in 2 of 3 cells" in text and "1 of 3 decoded reward models run at w = 0" in text
    assert "and the best ICL in 0 (no number" in text
    assert "3B parameters and more; the largest here has 270M" in text
    assert "spans 12 ROUGE-1 points (median), wider than the paper's whole +3. ROUGE" in text
    narrow = C.generation_conclusion(_gap().assign(ci_lo=0.5, ci_hi=1.0, icl_k=0), None, _best(7000), "lamp")
    assert "3B parameters" not in narrow and "spans 0 ROUGE-1 points (median). ROUGE" in narrow
    assert "and the best ICL in 3 (no number" in narrow


def test_paper_vs_run_puts_each_claim_beside_this_runs_number_and_status():
    rr = pd.DataFrame({"task": "t1", "model": "big", "rm": ["a", "b", "c"], "rm_acc_seen": [0.5, 0.9, 0.7],
                       "rouge1": [0.30, 0.31, 0.30], "w_selected": [0.0, 1.0, 2.0]})
    table, md = C.paper_vs_run(_taus(), rm_vs_rouge=rr, icl_gap=_gap(), best=_best(), corpus="synthetic",
                               profile="smoke")
    assert list(table.columns) == ["claim", "paper", "this_run", "status"] and len(table) == 3
    assert list(table.paper) == [C.PAPER[k]["paper"] for k in ("tau", "decoupling", "icl")]
    tau, dec, icl = table.this_run
    assert tau.startswith("a/p +0.20 [+0.10, +0.50]; b/p -0.40")
    assert table.status[0] == "2 of 3 cells have a tau (1 too small, 0 undefined); CI includes 0 in 1 of 2"
    assert "40 points (t1/big, 3 models)" in dec and "spans 1.0 points" in dec
    assert "1 of 1 cells have a gap of 20 points" in table.status[1] and "1 of 3 decoded reward models run at w = 0" \
        in table.status[1]
    assert icl.startswith("big (270M): t1 +5.0 [+1.0, +9.0]") and table.status[2].startswith("not comparable")
    assert md.count("\n| ") == 4 and "profile `smoke`" in md and "cited, not reproduced" in md
    # a profile without generations says so, and an unmeasured claim is never given a number
    t2, _ = C.paper_vs_run(_taus(), corpus="none", profile="tldr-real")
    assert list(t2.status[1:]) == ["not run", "not run"] and "not measured" in t2.this_run[2]


def test_full_text_prints_every_row_with_a_fixed_format():
    df = pd.DataFrame({"a": range(100), "x": [0.12345] * 99 + [math.nan], "s": "z"})
    text = C.full_text(df)
    lines = text.splitlines()
    assert len(lines) == 101 and "..." not in text  # a pandas repr would truncate to 10 rows
    assert lines[1].split() == ["0", "0.123", "z"] and lines[-1].split() == ["99", "z"]
    assert C.full_text(df.head(1), ".1f").splitlines()[1].split() == ["0", "0.1", "z"]


def test_corpus_of_reads_the_manifest_or_says_none(tmp_path):
    from lib.core.config import paths

    P = paths("q", tmp_path)
    assert C.corpus_of(P) == "none"
    P.preflamp.mkdir(parents=True)
    (P.preflamp / "manifest.json").write_text('{"corpus": "lamp"}')
    assert C.corpus_of(P) == "lamp"


@pytest.mark.parametrize("corpus", ["synthetic", "lamp", "none"])
def test_every_text_names_the_data(corpus):
    note = C.corpus_note(corpus)
    assert note in C.rm_conclusion(_acc(), corpus) and note in C.policy_conclusion(_taus(), _deployed(), corpus)
