"""ROUGE (pinned hand-computed values), Kendall tau-b, bootstrap CIs, and the figure/table writers."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

matplotlib.use("Agg")

from lib import metrics, plots  # noqa: E402


# --- ROUGE ------------------------------------------------------------------------------
def test_rouge_hand_computed():
    # 5 of 6 unigrams shared ("the" twice), LCS "the cat on the mat" = 5: P = R = F = 5/6
    s = metrics.rouge_scores(["the cat sat on the mat"], ["the cat is on the mat"])
    assert s.rouge1[0] == pytest.approx(5 / 6) and s.rougeL[0] == pytest.approx(5 / 6)
    # same bag of words reversed: ROUGE-1 = 1, LCS = 1 token of 4: ROUGE-L = 0.25
    s = metrics.rouge_scores(["d c b a"], ["a b c d"])
    assert s.rouge1[0] == pytest.approx(1.0) and s.rougeL[0] == pytest.approx(0.25)
    # 1 shared token, prediction 2 tokens, reference 4 tokens: P=1/2, R=1/4, F=2PR/(P+R)=1/3
    s = metrics.rouge_scores(["alpha beta"], ["alpha gamma delta epsilon"])
    assert s.rouge1[0] == pytest.approx(1 / 3)


def test_rouge_conventions_case_punct_strip_and_mean():
    # lowercased, punctuation dropped, surrounding whitespace stripped
    assert metrics.rouge(["  Hello, World! \n"], ["hello world"])["rouge1"] == pytest.approx(1.0)
    # mean over examples, not pooled counts: (1 + 0) / 2
    r = metrics.rouge(["a b", "c"], ["a b", "d e f g"])
    assert r["rouge1"] == pytest.approx(0.5) and r["rougeL"] == pytest.approx(0.5)
    assert metrics.rouge([""], ["a b"])["rouge1"] == 0.0


def test_rouge_stemmer_is_a_parameter():
    assert metrics.rouge(["running"], ["run"])["rouge1"] == 0.0
    assert metrics.rouge(["running"], ["run"], use_stemmer=True)["rouge1"] == pytest.approx(1.0)


def test_rouge_bad_input_is_an_error():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.rouge(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="example 1"):
        metrics.rouge(["a", None], ["a", "b"])


# --- Kendall tau --------------------------------------------------------------------------
def test_kendall_tau_hand_computed_and_scipy():
    # 7 concordant, 3 discordant pairs of 10: tau = 0.4
    x, y = [1, 2, 3, 4, 5], [3, 1, 2, 5, 4]
    assert metrics.kendall_tau(x, y)[0] == pytest.approx(0.4)
    # with ties: C=4, D=0, one tie in x and one in y among 6 pairs: tau_b = 4 / sqrt(5 * 5) = 0.8
    assert metrics.kendall_tau([1, 2, 2, 3], [1, 2, 3, 3])[0] == pytest.approx(0.8)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 30), rng.normal(size=30)
    ref = stats.kendalltau(a, b, variant="b")
    tau, p = metrics.kendall_tau(a, b)
    assert tau == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


def test_kendall_tau_constant_is_nan():
    assert math.isnan(metrics.kendall_tau([1, 1, 1], [1, 2, 3])[0])


def test_kendall_tau_ci_contains_tau_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    a = metrics.kendall_tau_ci(x, y, n_boot=300, seed=1)
    b = metrics.kendall_tau_ci(x, y, n_boot=300, seed=1)
    assert a == b
    assert a["ci_lo"] < a["tau"] < a["ci_hi"] and a["tau"] > 0.1 and a["n"] == 40


def test_tau_b_resampled_by_hand_and_against_scipy():
    x, y = [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]
    # (0,1) and (0,2) concordant, (1,2) discordant: (2 - 1) / 3; a repeated item ties with itself
    got = metrics.tau_b_resampled(x, y, [[0, 1, 2], [0, 0, 1], [2, 2, 2]])
    assert got[0] == pytest.approx(1 / 3) and got[1] == pytest.approx(1.0) and math.isnan(got[2])
    rng = np.random.default_rng(3)
    xs, ys = rng.integers(0, 4, size=12).astype(float), rng.integers(0, 3, size=12).astype(float)  # many ties
    idx = rng.integers(0, 12, size=(50, 12))
    want = [stats.kendalltau(xs[i], ys[i], variant="b").statistic for i in idx]
    np.testing.assert_allclose(metrics.tau_b_resampled(xs, ys, idx), want, rtol=1e-12, atol=1e-12)


def test_bootstrap_ci_mean():
    x = np.arange(100, dtype=float)
    lo, hi = metrics.bootstrap_ci(x, n_boot=500, seed=0)
    assert lo < 49.5 < hi and hi - lo < 30
    assert metrics.bootstrap_ci(x, n_boot=500, seed=0) == (lo, hi)


def test_tau_table_groups():
    df = pd.DataFrame({"task": ["A"] * 5 + ["B"] * 5,
                       "rm_acc": [1, 2, 3, 4, 5] * 2,
                       "pol": [3, 1, 2, 5, 4] + [5, 4, 3, 2, 1]})
    t = metrics.tau_table(df, "rm_acc", "pol", by=["task"], n_boot=50)
    assert list(t.task) == ["A", "B"]
    assert t.tau.tolist() == pytest.approx([0.4, -1.0])
    with pytest.raises(KeyError, match="nope"):
        metrics.tau_table(df, "rm_acc", "nope")


# --- figures and tables ----------------------------------------------------------------------
def test_save_table_and_figure(tmp_path):
    import matplotlib.pyplot as plt

    df = pd.DataFrame({"task": ["LaMP-4", "a_b"], "tau": [0.12345, float("nan")], "n": [3, 4]})
    paths = plots.save_table(df, "tau", tmp_path)
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    md = (tmp_path / "tau.md").read_text().splitlines()
    assert md[0] == "| task | tau | n |" and md[2] == "| LaMP-4 | 0.123 | 3 |"
    assert "a\\_b" in (tmp_path / "tau.tex").read_text()
    assert pd.read_csv(tmp_path / "tau.csv").shape == (2, 3)
    plots.set_theme()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = plots.save_figure(fig, "line", tmp_path)
    first = [p.read_bytes() for p in out]
    plots.save_figure(fig, "line", tmp_path)
    assert [p.read_bytes() for p in out] == first  # byte-identical reruns (no timestamps)
    plt.close(fig)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError):
        plots.save_figure(fig, "../x", tmp_path)


def test_project_plots_render():
    import matplotlib.pyplot as plt

    from lib import evaluate

    rows = [{"task": t, "model": "smollm2-135m", "system": s, "param": p, "rm": rm, "rouge1": r, "rougeL": r,
             "follows_rule": None}
            for t in ("LaMP-4", "LaMP-7") for s, p, rm, r in
            [("base", None, None, 0.2), ("icl", 1, None, 0.3), ("icl", 4, None, 0.4), ("rgd", 0.1, "a", 0.25),
             ("rgd", 1.0, "a", 0.1), ("rgd", 0.1, "b", 0.2)]]
    summary = evaluate.summarize(pd.DataFrame(rows), n_boot=10)
    best = evaluate.best_systems(summary)
    assert plots.setting_label(best.iloc[1]) == "ICL k=4"
    for fig in (plots.plot_best_systems(best), plots.plot_sweep(summary, "icl"), plots.plot_sweep(summary, "rgd"),
                plots.plot_size(best)):
        assert fig.axes
        plt.close(fig)
    df = pd.DataFrame({"task": ["A"] * 4, "method": ["x", "y", "x", "y"], "rm_acc": [0.5, 0.6, 0.7, 0.8],
                       "policy_acc": [0.4, 0.6, 0.5, 0.7]})
    taus = metrics.tau_table(df, "rm_acc", "policy_acc", n_boot=10)
    fig = plots.plot_tau_scatter(df, "rm_acc", "policy_acc", taus=taus)
    assert "tau=0.67" in fig.axes[0].get_title()
    plt.close(fig)


def test_tau_b_rows_by_hand():
    # x = [1, 2, 3], y = [1, 3, 2]: pairs (12) concordant, (13) concordant, (23) discordant -> (2 - 1) / 3
    # x = [1, 1, 2], y = [1, 2, 3]: untied-x pairs 2, all concordant; untied-y 3 -> 2 / sqrt(2 * 3)
    got = metrics.tau_b_rows([[1, 2, 3], [1, 1, 2], [1, 1, 1]], [[1, 3, 2], [1, 2, 3], [1, 2, 3]])
    np.testing.assert_allclose(got[:2], [1 / 3, 2 / np.sqrt(6)])
    assert np.isnan(got[2])


def test_pair_bootstrap_is_wider_than_model_only_when_pairs_are_few():
    rng = np.random.default_rng(0)
    M, P = 12, 16
    skill = np.linspace(0.3, 0.8, M)
    X = (rng.random((M, P)) < skill[:, None]).astype(float)
    Y = (rng.random((M, P)) < skill[:, None]).astype(float)
    both = metrics.kendall_tau_pairs_ci(X, Y, n_boot=800, seed=1)
    models_only = metrics.kendall_tau_ci(X.mean(1), Y.mean(1), n_boot=800, seed=1)
    assert both["tau"] == pytest.approx(models_only["tau"])
    assert both["ci_hi"] - both["ci_lo"] > models_only["ci_hi"] - models_only["ci_lo"]
    with pytest.raises(ValueError, match="one shape"):
        metrics.kendall_tau_pairs_ci(X, Y[:, :3])


def test_plot_tau_vs_w_draws_one_point_per_fixed_w_cell():
    taus = pd.DataFrame({"task": ["a", "a", "a", "b", "b"], "policy": "p", "definition": "cumulative",
                         "w": [0.5, 1.0, "selected", 0.5, 1.0], "tau": [0.1, 0.2, 0.9, -0.1, np.nan],
                         "ci_lo": [0.0, 0.1, 0.8, -0.2, np.nan], "ci_hi": [0.2, 0.3, 1.0, 0.0, np.nan]})
    fig = plots.plot_tau_vs_w(taus)
    ax = fig.axes[0]
    drawn = {c.get_label(): list(c.lines[0].get_ydata()) for c in ax.containers}  # one errorbar series per task
    assert drawn["a"] == [0.1, 0.2]  # the "selected" row (0.9) is not a fixed w: not drawn
    assert drawn["b"][0] == -0.1 and np.isnan(drawn["b"][1])
    assert ax.get_xscale() == "log"
