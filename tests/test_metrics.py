"""ROUGE (pinned hand-computed values), Kendall tau-b, bootstrap CIs, and the figure/table writers."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

matplotlib.use("Agg")

from lib.evaluation import metrics
from lib.report import plots, tau_plots


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
def test_kendall_tau_hand_computed():
    # x = 1..5, y = [3, 1, 2, 5, 4]: of the 10 pairs, (1,2) (1,3) (4,5) are discordant, 7 concordant:
    # tau = (7 - 3) / 10 = 0.4. No ties, n = 5: scipy's exact p = 2 P(D <= 3) over the 120 permutations,
    # whose inversion counts 0, 1, 2, 3 occur 1, 4, 9, 15 times: p = 2 * 29 / 120 = 29 / 60
    tau, p = metrics.kendall_tau([1, 2, 3, 4, 5], [3, 1, 2, 5, 4])
    assert tau == pytest.approx(0.4) and p == pytest.approx(29 / 60)
    # with ties: x = [1, 2, 2, 3], y = [1, 2, 3, 3]: C = 4, D = 0; one tied pair in x, one in y, so 5 untied
    # pairs on each side: tau_b = 4 / sqrt(5 * 5) = 0.8. Ties make p asymptotic: var(S) = (v0 - vx - vy) / 18
    # + tx * ty / (2 n (n - 1)) with v0 = n (n - 1)(2n + 5) = 156, vx = vy = 2 * 1 * 9 = 18, tx = ty = 2 * 1:
    # var = 120 / 18 + 4 / 24 = 41 / 6, z = 4 / sqrt(41 / 6), p = erfc(z / sqrt 2)
    tau, p = metrics.kendall_tau([1, 2, 2, 3], [1, 2, 3, 3])
    assert tau == pytest.approx(0.8) and p == pytest.approx(math.erfc(4 / math.sqrt(41 / 6) / math.sqrt(2)))
    # perfectly reversed: D = 3 of 3 pairs, tau = -1; exact p = 2 * 1 / 6 (one permutation of 6 has 3 inversions)
    tau, p = metrics.kendall_tau([1, 2, 3], [3, 2, 1])
    assert tau == pytest.approx(-1.0) and p == pytest.approx(1 / 3)


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
    # two values: every resample mean is 0, 0.5 or 1 (probability 1/4, 1/2, 1/4), so the 2.5% and 97.5%
    # percentiles of 2000 resamples are 0 and 1 whichever quantile interpolation reads them
    for q in ("numpy", "scipy"):
        assert metrics.bootstrap_ci([0.0, 1.0], n_boot=2000, seed=0, quantile=q) == (0.0, 1.0)
    with pytest.raises(ValueError, match="quantile"):
        metrics.bootstrap_ci(x, quantile="R")


def test_bootstrap_ci_scipy_quantiles_reproduce_scipy_bootstrap():
    """``quantile="scipy"`` is scipy.stats.bootstrap's percentile CI bit for bit (the RM accuracies' CIs), from
    the same resamples as numpy's quantiles, which differ from it only in the last bits."""
    c = (np.random.default_rng(3).random(190) > 0.5).astype(float)
    for n_boot in (2000, 100):
        ref = stats.bootstrap((c,), np.mean, n_resamples=n_boot, confidence_level=0.95, method="percentile",
                              random_state=np.random.default_rng(0)).confidence_interval
        ours = metrics.bootstrap_ci(c, n_boot=n_boot, seed=0, alpha=1 - 0.95, quantile="scipy")
        assert ours == (ref.low, ref.high)
        assert metrics.bootstrap_ci(c, n_boot=n_boot, seed=0, alpha=1 - 0.95) == pytest.approx(ours, abs=1e-12)


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


def drawn(ax) -> list[tuple[list, list]]:
    """(x, y) of every non-empty line of ``ax`` (seaborn adds empty legend lines), as plain floats."""
    return [([float(v) for v in ln.get_xdata()], [float(v) for v in ln.get_ydata()]) for ln in ax.lines
            if len(ln.get_xdata())]


def test_project_plots_render():
    import matplotlib.pyplot as plt

    from lib.report import results

    rows = [{"task": t, "model": "smollm2-135m", "system": s, "param": p, "rm": rm, "rouge1": r, "rougeL": r,
             "follows_rule": None}
            for t in ("LaMP-4", "LaMP-7") for s, p, rm, r in
            [("base", None, None, 0.2), ("icl", 1, None, 0.3), ("icl", 4, None, 0.4), ("rgd", 0.1, "a", 0.25),
             ("rgd", 1.0, "a", 0.1), ("rgd", 0.1, "b", 0.2)]]
    summary = results.summarize(pd.DataFrame(rows), n_boot=10)
    best = results.best_systems(summary)
    assert plots.setting_label(best.iloc[1]) == "ICL k=4"
    # best systems: one panel (one policy), per system a point per task at its ROUGE-1, with its CI whisker
    fig = plots.plot_best_systems(best)
    (ax,) = fig.axes
    points = {ln.get_marker(): [float(v) for v in ln.get_ydata()] for ln in ax.lines
              if len(ln.get_xdata()) and ln.get_marker() in ("o", "s", "^")}  # not the whiskers' caps
    assert points == {"o": [0.2, 0.2], "s": [0.4, 0.4], "^": [0.25, 0.25]}  # base, ICL k = 4, RGD a at w = 0.1
    whiskers = [s for c in ax.containers for s in c.lines[2][0].get_segments()]
    assert len(whiskers) == 6 and all(seg[0][1] == seg[1][1] for seg in whiskers)  # one query: lo = hi
    assert ax.get_title() == "policy smollm2-135m" and ax.get_ylabel() == "ROUGE-1 (test queries)"
    plt.close(fig)
    # ICL sweep: a panel per task, a line per policy from k = 0 (the base policy) over the swept k
    fig = plots.plot_sweep(summary, "icl")
    assert [ax.get_title() for ax in fig.axes] == ["LaMP-4", "LaMP-7"] and fig.axes[0].get_xlabel() == "in-context examples k"
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_linestyle() != "None"]
    assert list(line.get_xdata()) == [0, 1, 2] and list(line.get_ydata()) == [0.2, 0.3, 0.4]  # base, k = 1, k = 4
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0\n(base)", "1", "4"]
    assert fig.axes[0].get_ylabel() == "ROUGE-1 (all queries)"  # no halves in this summary
    plt.close(fig)
    with pytest.raises(ValueError, match="only ICL"):  # RGD decodes at its one deployed w: nothing to sweep
        plots.plot_sweep(summary, "rgd")
    # size: one point per system at the policy's 135M parameters (dodged on the log axis), never a line
    fig = plots.plot_size(best)
    pts = [(xs, ys) for ln, (xs, ys) in zip([ln for ln in fig.axes[0].lines if len(ln.get_xdata())], drawn(fig.axes[0]))
           if ln.get_marker() != "_"]  # not the whiskers' caps
    assert [ys for _, ys in pts] == [[0.2], [0.4], [0.25]]
    assert [xs[0] for xs, _ in pts] == pytest.approx([135 * 0.93, 135.0, 135 * 1.07])
    assert not [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_xlabel() == "policy parameters"
    plt.close(fig)
    df = pd.DataFrame({"task": ["A"] * 4, "method": ["x", "y", "x", "y"], "rm_acc": [0.5, 0.6, 0.7, 0.8],
                       "policy_acc": [0.4, 0.6, 0.5, 0.7]})
    taus = metrics.tau_table(df, "rm_acc", "policy_acc", n_boot=10)
    fig = plots.plot_tau_scatter(df, "rm_acc", "policy_acc", taus=taus)
    assert fig.axes[0].texts[0].get_text().startswith("τ = 0.67")
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
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in ax.lines if ln.get_label() in ("a", "b")}
    assert lines["a"] == [0.1, 0.2]  # the "selected" row (0.9) is not a fixed w: not drawn
    assert lines["b"][0] == -0.1 and np.isnan(lines["b"][1])
    (gap,) = [ln for ln in ax.lines if ln.get_marker() == "x" and len(ln.get_xdata())]  # b at w = 1: no tau
    assert list(gap.get_ydata()) == [tau_plots.NO_TAU_Y]
    assert ax.get_xscale() == "log"


def test_plot_accuracy_draws_a_dot_and_ci_per_method_dataset_and_backbone():
    import matplotlib.pyplot as plt

    rows = [{"task": t, "method": m, "backbone": b, "prefix_train": False, "seeds": 2, "degenerate": 0,
             "rm_acc_seen": acc, "ci_lo_seen": acc - 0.1, "ci_hi_seen": acc + 0.05,
             "rm_acc_unseen": acc - 0.2, "ci_lo_unseen": acc - 0.3, "ci_hi_unseen": acc - 0.1}
            for t, base in (("A", 0.6), ("B", 0.7)) for i, m in enumerate(("bt", "lore"))
            for j, b in enumerate(("x", "y")) for acc in [base + 0.1 * i + 0.01 * j]]
    rows.append(dict(rows[0], prefix_train=True, rm_acc_seen=0.99))  # another table: not drawn
    fig = plots.plot_accuracy(pd.DataFrame(rows))
    assert len(fig.axes) == 4  # rows: seen, unseen users; columns: backbones x, y
    assert [ax.get_title() for ax in fig.axes] == ["x", "y", "", ""]
    assert [ax.get_ylabel() for ax in fig.axes] == ["seen\nusers", "", "unseen\nusers", ""]
    ax = fig.axes[0]  # backbone x, seen users: datasets A, B down the panel, bt above lore within each
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    dots = {ln.get_marker(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines
            if len(ln.get_xdata()) and ln.get_linestyle() == "None"}
    assert np.allclose(dots["o"], [[0.6, 0.7], [-0.2, 0.8]]) and np.allclose(dots["s"], [[0.7, 0.8], [0.2, 1.2]])
    # whiskers from ci_lo = acc - 0.1 to ci_hi = acc + 0.05 at every dot
    segs = [s for c in ax.containers for s in c.lines[2][0].get_segments()]
    assert np.allclose(segs, [[[0.5, -0.2], [0.65, -0.2]], [[0.6, 0.8], [0.75, 0.8]],
                              [[0.6, 0.2], [0.75, 0.2]], [[0.7, 1.2], [0.85, 1.2]]])
    assert [tuple(ln.get_xdata()) for ln in ax.lines if tuple(ln.get_xdata()) == (0.5, 0.5)]  # chance line
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "RM method" and [t.get_text() for t in legend.get_texts()] == ["bt", "lore"]
    plt.close(fig)
