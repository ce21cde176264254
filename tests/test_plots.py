"""The data helpers behind notebook 06's Pref-LaMP table and figure (lib/report/plots.py, lib/data/preflamp.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.data import preflamp
from lib.report import plots


def test_pair_lengths_long_format():
    pairs = pd.DataFrame({"task": ["LaMP-4", "LaMP-5"], "user": ["a", "b"], "chosen": ["one two three", "x"],
                          "rejected": ["four", "y z"], "user_group": ["seen", "unseen"], "split": ["train", "test"]})
    t = plots.pair_lengths(pairs)
    assert t.to_dict("list") == {"task": ["LaMP-4", "LaMP-5", "LaMP-4", "LaMP-5"], "user": ["a", "b", "a", "b"],
                                 "side": ["chosen", "chosen", "rejected", "rejected"], "words": [3, 1, 1, 2]}
    assert list(pairs.columns) == ["task", "user", "chosen", "rejected", "user_group", "split"]  # input untouched


def test_preflamp_overview_does_not_touch_its_input():
    import matplotlib.pyplot as plt

    pairs = pd.DataFrame({"task": ["LaMP-4"] * 3, "user": ["a", "a", "b"], "chosen": ["a b", "c", "d e f"],
                          "rejected": ["g", "h i", "j"], "user_group": ["seen", "seen", "unseen"],
                          "split": ["train", "test", "test"]})
    before = pairs.copy()
    fig = plots.plot_preflamp_overview(pairs)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Pairs per task, user group and split",
                                                     "Output length: chosen vs rejected"]
    pd.testing.assert_frame_equal(pairs, before)
    plt.close(fig)


def test_counts_table_one_row_per_task_in_manifest_order():
    manifest = {"tasks": {"LaMP-7": {"users": 3, "pairs": 10}, "LaMP-4": {"users": 2, "pairs": 8}}}
    t = preflamp.counts_table(manifest)
    assert t.to_dict("list") == {"task": ["LaMP-7", "LaMP-4"], "users": [3, 2], "pairs": [10, 8]}


def test_an_interval_that_touches_its_estimate_is_drawn_not_refused():
    """A percentile-bootstrap bound can sit a last bit past its estimate (tau -0.2, CI [-0.707, -0.2] as computed
    on a real run): matplotlib refuses negative error bars, so notebook 06 used to stop there."""
    y, lo = -0.2, -0.7071067811865476
    hi = -0.20000000000000004  # a last bit *below* the estimate: hi - y < 0
    assert hi - y < 0
    taus = pd.DataFrame({"task": ["LaMP-4", "LaMP-5"], "metric": ["rm_acc", "rm_acc"], "policy": ["p", "p"],
                         "tau": [y, 0.3], "ci_lo": [lo, 0.1], "ci_hi": [hi, np.nan]})
    import matplotlib.pyplot as plt

    fig = plots.plot_tau_points(taus)
    segs = [np.asarray(s) for c in fig.axes[0].collections if hasattr(c, "get_segments") for s in c.get_segments()
            if np.ndim(s) == 2]
    first = [s for s in segs if np.isclose(min(s[:, 1]), lo)]
    assert len(first) == 1 and max(first[0][:, 1]) == y  # drawn from the lower bound up to the estimate
    plt.close(fig)
    err = plots.interval_err([y, 0.3], np.array([lo, 0.1]), np.array([hi, np.nan]))
    assert err[1, 0] == 0.0 and err[0, 0] == pytest.approx(y - lo) and np.isnan(err[1, 1])


# --- every figure, rendered on a small frame with the cells a real run has: a CI, no CI, too small, constant ----
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from lib.report import curves, gen_plots, style, tau_plots  # noqa: E402

METHODS = ["bt", "pal", "vpl"]


@pytest.fixture(autouse=True)
def _theme():
    plots.set_theme()
    yield
    plt.close("all")


def _texts(fig) -> list[str]:
    fig.canvas.draw()  # tick labels exist once drawn
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def _printable(fig) -> list[str]:
    """What every figure owes a reader: the width a paper prints (one column or the text width), print-size
    fonts, a title, and never "nan" in any text. Returns the texts."""
    texts = _texts(fig)
    assert fig.get_figwidth() in (style.SINGLE, style.DOUBLE)
    assert fig.get_suptitle(), "a caption-ready title"
    assert not [s for s in texts if "nan" in s.lower()], texts
    small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text) if t.get_visible() and t.get_text()
             and t.get_fontsize() < 6.5]
    assert not small, small
    return texts


def _bars(ax, axis: str = "y") -> int:
    """Error bars drawn in ``ax`` (segments of ``axis``'s whiskers with a positive length)."""
    n = 0
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer) and (c.has_yerr if axis == "y" else c.has_xerr):
            for coll in c.lines[2]:
                segs = coll.get_segments()
                k = 1 if axis == "y" else 0
                n += sum(1 for s in segs if len(s) and abs(s[-1][k] - s[0][k]) > 0)
    return n


def _markers(ax, marker: str) -> list:
    return [ln for ln in ax.get_lines() if ln.get_marker() == marker and len(ln.get_xdata())]


def test_tau_text_says_why_a_cell_has_no_number():
    assert style.tau_text({"tau": 0.676, "ci_lo": -0.033, "ci_hi": 0.915, "n": 24, "status": ""}) == \
        "τ = 0.68 [\u22120.03, 0.92], n = 24"
    assert style.tau_text({"tau": 0.6, "ci_lo": float("nan"), "ci_hi": float("nan"), "p_exact": 0.1361, "n": 6}) == \
        "τ = 0.60, exact p = 0.14, n = 6"
    nan = float("nan")
    assert style.tau_text({"tau": nan, "ci_lo": nan, "ci_hi": nan, "status": "too small: 18 pairs < 20"}) == \
        "no τ: too small (18 pairs < 20)"
    assert style.tau_text({"tau": nan, "status": "undefined: constant policy accuracy"}, n=False) == \
        "no τ: undefined (constant policy accuracy)"
    assert style.tau_text({"tau": 0.3, "ci_lo": nan, "ci_hi": nan, "status": "no CI: 80 of 1000 resamples constant"},
                          n=False) == "τ = 0.30 (no CI: 80 of 1000 resamples constant)"
    assert style.tau_text({"tau": nan, "ci_lo": nan, "ci_hi": nan, "status": nan}) == "no τ: not computed"


def test_limits_keep_chance_in_view_and_a_constant_flat():
    lo, hi = style.limits([0.5] * 6, "policy_acc")
    assert lo <= 0.35 and hi >= 0.65  # not zoomed to the noise around one value
    lo, hi = style.limits([0.64, 0.78], "rm_acc")
    assert lo < 0.5 < 0.78 < hi <= 1.04
    assert style.limits([0.02, 0.2], "rouge1")[0] == 0.0
    assert style.spread_duplicates([0.5, 0.5, 0.7], [0.5, 0.5, 0.5], 0.02).tolist() == [0.49, 0.51, 0.7]


def _acc_table():
    rows = []
    for task in ("LaMP-4", "tldr"):
        for m in METHODS:
            for bb in ("smollm2-135m", "minilm-l6", "gemma3-270m"):
                acc = 0.5 + 0.1 * METHODS.index(m)
                flagged = (task, m, bb) == ("tldr", "vpl", "minilm-l6")  # every seed flagged: no estimate
                rows.append({"task": task, "method": m, "backbone": bb, "prefix_train": False,
                             "seeds": 0 if flagged else 2, "degenerate": 2 if flagged else int(m == "pal"),
                             **{f"{k}_{g}": (float("nan") if flagged else v)
                                for g in ("seen", "unseen") for k, v in (("rm_acc", acc), ("ci_lo", acc - 0.1),
                                                                         ("ci_hi", acc + 0.1))}})
    return pd.DataFrame(rows)


def test_rm_accuracy_is_a_method_by_dataset_dot_plot_faceted_by_backbone():
    fig = plots.plot_accuracy(_acc_table())
    texts = _printable(fig)
    assert len(fig.axes) == 6 and fig.get_figwidth() == style.DOUBLE  # 3 backbones x (seen, unseen)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["smollm2-135m", "minilm-l6", "gemma3-270m"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["LaMP-4", "tldr"]
    assert {ax.get_xlabel() for ax in fig.axes[3:]} == {"RM accuracy"}
    assert [_bars(ax, "x") for ax in fig.axes] == [6, 5, 6] * 2  # a CI per estimate; the flagged cell has none
    assert len(_markers(fig.axes[1], style.NO_NUMBER)) == 1 and len(_markers(fig.axes[0], style.NO_NUMBER)) == 0
    assert {"bt", "pal", "vpl", "no estimate: every seed flagged", "some seeds flagged"} <= set(texts)
    assert [t.get_text() for t in fig.legends[0].get_texts()][:3] == METHODS


def test_tldr_real_shape_fits_one_column():
    """tldr-real: one dataset, two backbones, one policy: single-column figures."""
    t = _acc_table()
    t = t[(t.task == "tldr") & (t.backbone != "gemma3-270m")]
    fig = plots.plot_accuracy(t)
    _printable(fig)
    assert fig.get_figwidth() == style.SINGLE and len(fig.axes) == 4


def _pa_frame():
    """Per reward model accuracies: a spread cell, a constant policy accuracy, coinciding dots."""
    rows = []
    for task in ("LaMP-4", "LaMP-5"):
        for pol in ("gemma3-270m", "smollm2-135m"):
            for k in range(6):
                m = METHODS[k % 3]
                rows.append({"task": task, "policy": pol, "method": m, "rm_acc": [0.5, 0.5, 0.75, 0.75, 1.0, 0.25][k],
                             "policy_acc": 0.5 if task == "LaMP-5" else 0.3 + 0.1 * k})
    return pd.DataFrame(rows)


def _taus():
    nan = float("nan")
    return pd.DataFrame([
        {"task": "LaMP-4", "policy": "gemma3-270m", "n": 6, "tau": 0.68, "ci_lo": -0.03, "ci_hi": 0.92, "status": ""},
        {"task": "LaMP-4", "policy": "smollm2-135m", "n": 6, "tau": nan, "ci_lo": nan, "ci_hi": nan,
         "status": "too small: 18 pairs < 20"},
        {"task": "LaMP-5", "policy": "gemma3-270m", "n": 6, "tau": nan, "ci_lo": nan, "ci_hi": nan,
         "status": "undefined: constant policy accuracy"},
        {"task": "LaMP-5", "policy": "smollm2-135m", "n": 6, "tau": nan, "ci_lo": nan, "ci_hi": nan,
         "status": "undefined: constant policy accuracy"}])


def test_tau_scatter_captions_each_cell_and_shares_honest_axes():
    fig = plots.plot_tau_scatter(_pa_frame(), "rm_acc", "policy_acc", taus=_taus())
    texts = _printable(fig)
    caps = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert [c.replace("\n", " ") for c in caps] == ["τ = 0.68 [\u22120.03, 0.92], n = 6",
                                                 "no τ: undefined (constant policy accuracy)",
                                                 "no τ: too small (18 pairs < 20)",
                                                 "no τ: undefined (constant policy accuracy)"]
    a = fig.axes
    assert a[0].get_shared_x_axes().joined(a[0], a[3]) and a[0].get_shared_y_axes().joined(a[0], a[3])
    assert [ax.get_xlabel() for ax in a[2:]] == ["RM accuracy"] * 2
    assert a[0].get_ylabel() == "gemma3-270m\npolicy accuracy"
    lo, hi = a[1].get_ylim()
    assert lo <= 0.3 - 0.03 and hi >= 0.8 and lo >= -0.05  # a constant panel shares the full range, chance in view
    xs = np.concatenate([ln.get_xdata() for ln in a[1].get_lines() if ln.get_marker() in tau_plots.MARKERS])
    assert len(np.unique(np.round(xs, 6))) == 6  # the two dots at (0.5, 0.5) and at (0.75, 0.5) spread, not stacked
    assert sorted(np.round(xs, 3)) == pytest.approx([0.25, 0.5 - 0.0095, 0.5 + 0.0095, 0.75 - 0.0095, 0.75 + 0.0095, 1.0],
                                                    abs=0.003)
    assert "dots on one value spread sideways" in fig.get_suptitle()
    assert {"bt", "pal", "vpl"} <= set(texts)


def test_tau_scatter_of_rouge_draws_its_cis_and_the_exact_p():
    df = _pa_frame().rename(columns={"policy": "model", "rm_acc": "rm_acc_seen", "policy_acc": "rouge1"})
    df["rouge1_lo"], df["rouge1_hi"] = df.rouge1 - 0.05, df.rouge1 + 0.05
    taus = _taus().rename(columns={"policy": "model"}).assign(p_exact=0.14, ci_lo=float("nan"), ci_hi=float("nan"))
    fig = plots.plot_tau_scatter(df, "rm_acc_seen", "rouge1", taus=taus, row="model",
                                 title="RGD ROUGE-1 against RM accuracy")
    _printable(fig)
    assert [_bars(ax) for ax in fig.axes] == [6, 6, 6, 6]
    assert fig.axes[0].texts[0].get_text().replace("\n", " ") == "τ = 0.68, exact p = 0.14, n = 6"
    assert fig.axes[2].get_xlabel() == "RM accuracy (seen users)" and "ROUGE-1" in fig.axes[0].get_ylabel()
    assert fig.axes[0].get_ylim()[0] == 0.0


def test_tau_scatter_of_one_cell_is_single_column():
    df = _pa_frame()
    df = df[(df.task == "LaMP-4") & (df.policy == "gemma3-270m")].assign(task="tldr", policy="smollm2-135m")
    taus = _taus().iloc[:1].assign(task="tldr", policy="smollm2-135m")
    fig = plots.plot_tau_scatter(df, "rm_acc", "policy_acc", taus=taus)
    _printable(fig)
    assert fig.get_figwidth() == style.SINGLE and len(fig.axes) == 1


def _selection():
    rows = []
    for task in ("LaMP-4", "LaMP-5"):
        for pol in ("gemma3-270m", "smollm2-135m"):
            rows.append({"task": task, "policy": pol, "metric": "RM accuracy", "n": 6, "tau": 0.3, "ci_lo": float("nan"),
                         "ci_hi": float("nan"), "p_exact": 0.5, "status": ""})
            rows.append({"task": task, "policy": pol, "metric": "policy accuracy (rgd_likelihood)", "n": 6,
                         "tau": float("nan"), "ci_lo": float("nan"), "ci_hi": float("nan"), "p_exact": float("nan"),
                         "status": "undefined: a side is constant"})
    return pd.DataFrame(rows)


def test_selection_metrics_mark_and_explain_empty_categories():
    fig = plots.plot_tau_points(_selection(), title="Upstream metric vs RGD ROUGE-1")
    texts = _printable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["LaMP-4", "LaMP-5"]
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())  # labels sit under their groups
    nos = _markers(ax, style.NO_NUMBER)
    assert len(nos) == 1 and np.allclose(nos[0].get_ydata(), tau_plots.NO_TAU_Y) and len(nos[0].get_xdata()) == 2
    assert "no τ" in [t.get_text() for t in ax.get_yticklabels()]
    assert "policy accuracy (rgd_likelihood) \u2014 no τ in 4 of 4 cells: undefined (a side is constant)" in texts
    assert "exact permutation p" in fig.get_suptitle().replace("\n", " ") and ax.get_ylabel() == "Kendall τ-b"
    with_ci = _selection().assign(ci_lo=lambda d: d.tau - 0.2, ci_hi=lambda d: d.tau + 0.2)
    fig = plots.plot_tau_points(with_ci)
    assert [_bars(a) for a in fig.axes] == [2, 2] and "95% CI" in fig.get_suptitle()


def _vs_w():
    nan, rows = float("nan"), []
    for d in ("cumulative", "rgd_likelihood"):
        for w in ("deployed", 0.25, 1.0, 4.0):
            rows.append({"task": "LaMP-4", "policy": "p", "definition": d, "w": w, "tau": nan, "ci_lo": nan,
                         "ci_hi": nan, "status": "too small: 18 pairs < 20"})
            if d == "rgd_likelihood":
                s = {"tau": nan, "ci_lo": nan, "ci_hi": nan, "status": "undefined: constant policy accuracy"}
            elif w == 0.25:
                s = {"tau": nan, "ci_lo": nan, "ci_hi": nan, "status": "undefined: constant policy accuracy"}
            elif w == 1.0:
                s = {"tau": 0.3, "ci_lo": nan, "ci_hi": nan, "status": "no CI: 80 of 1000 resamples constant"}
            else:
                s = {"tau": 0.5, "ci_lo": 0.1, "ci_hi": 0.8, "status": ""}
            rows.append({"task": "LaMP-5", "policy": "p", "definition": d, "w": w, **s})
    return pd.DataFrame(rows)


def test_tau_vs_w_shows_cis_open_no_ci_points_and_absent_cells():
    fig = plots.plot_tau_vs_w(_vs_w())
    texts = _printable(fig)
    cum, rgd = fig.axes
    assert fig.get_figwidth() == style.SINGLE and cum.get_ylabel() == "Kendall τ-b"
    assert [t.get_text() for t in rgd.get_xticklabels()] == ["0.25", "1", "4"]  # "deployed" rows left out
    assert _bars(cum) == 1  # w = 4 has a CI; the deployed row is not drawn
    opened = [ln for ln in cum.get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata())]
    assert len(opened) == 1 and opened[0].get_ydata()[0] == 0.3  # an estimate without a CI
    assert len(_markers(cum, style.NO_NUMBER)) == 1  # LaMP-5 at w = 0.25: no tau
    assert "LaMP-4: no τ at any w (too small)" in texts
    assert any("no τ at any w: LaMP-5 (undefined: constant policy accuracy)" in t.replace("\n", " ") for t in texts)
    assert "95% CI" in fig.get_suptitle()


def _best():
    rows = []
    for model, pm in (("smollm2-135m", 135), ("gemma3-270m", 270)):
        for task in ("LaMP-4", "LaMP-5"):
            for system, param, r in (("base", float("nan"), 0.2), ("icl", 2.0, 0.3), ("rgd", 0.0, 0.2)):
                rows.append({"task": task, "model": model, "params_m": pm, "system": system, "rm": "", "param": param,
                             "rouge1": r, "rouge1_lo": r - 0.05, "rouge1_hi": r + 0.05})
    return pd.DataFrame(rows)


def test_best_systems_are_points_with_cis_open_where_the_base_won():
    fig = plots.plot_best_systems(_best())
    texts = _printable(fig)
    assert [_bars(ax) for ax in fig.axes] == [6, 6]
    assert fig.axes[0].get_ylabel() == "ROUGE-1 (test queries)" and fig.axes[0].get_xlabel() == "dataset"
    assert {"base policy", "best ICL", "best RGD"} <= set(texts)
    opened = [ln for ln in fig.axes[0].get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata())]
    assert len(opened) == 1 and opened[0].get_marker() == "^"  # RGD fell back to w = 0 in both tasks


def test_rouge_vs_size_never_joins_two_families():
    fig = plots.plot_size(_best())
    texts = _printable(fig)
    joined = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
    assert joined == []  # SmolLM2 (instruct) and Gemma 3 (base): two families, no line
    assert {"smollm2 (instruct)", "gemma3 (base)"} <= set(texts) and "no trend" in fig.get_suptitle()
    assert [_bars(ax) for ax in fig.axes] == [6, 6]
    qwen = _best().assign(model=lambda d: d.model.map({"smollm2-135m": "qwen2.5-0.5b", "gemma3-270m": "qwen2.5-1.5b"}))
    fig = plots.plot_size(qwen)
    joined = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 1]
    assert len(joined) == 3  # one family: base, ICL and RGD each joined across its sizes
    assert gen_plots.family("qwen2.5-7b") == "qwen2.5 (instruct)" and gen_plots.family("mystery") == "mystery"


def test_icl_sweep_starts_at_the_base_policy_with_cis_and_one_legend():
    rows = []
    for half in ("val", "test"):
        for model in ("smollm2-135m", "gemma3-270m"):
            rows.append({"task": "LaMP-4", "model": model, "system": "base", "rm": "", "param": float("nan"),
                         "half": half, "rouge1": 0.2, "rouge1_lo": 0.1, "rouge1_hi": 0.3})
            for k in (1, 2, 4):
                rows.append({"task": "LaMP-4", "model": model, "system": "icl", "rm": "", "param": float(k),
                             "half": half, "rouge1": 0.2 + 0.02 * k, "rouge1_lo": 0.1, "rouge1_hi": 0.4})
    fig = plots.plot_sweep(pd.DataFrame(rows), "icl")
    texts = _printable(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0\n(base)", "1", "2", "4"]
    assert _bars(ax) == 8 and len(fig.legends) == 1 and ax.get_legend() is None
    assert ax.get_ylabel() == "ROUGE-1 (test queries)" and {"smollm2-135m", "gemma3-270m"} <= set(texts)
    styles = {(ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines() if ln.get_linestyle() != "None"}
    assert len(styles) == 2  # the two policies differ in dash and marker, not only in hue
    with pytest.raises(ValueError, match="only ICL"):
        plots.plot_sweep(pd.DataFrame(rows), "rgd")


def test_preflamp_overview_legends_sit_below_the_bars():
    pairs = pd.DataFrame({"task": ["LaMP-4"] * 4, "user": ["a", "a", "b", "c"], "chosen": ["a b", "c", "d e f", "g"],
                          "rejected": ["g", "h i", "j", "k l"], "user_group": ["seen", "seen", "unseen", "unseen"],
                          "split": ["train", "test", "test", "train"]})
    fig = plots.plot_preflamp_overview(pairs)
    _printable(fig)
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert ax.get_legend().get_window_extent(r).y1 <= ax.get_window_extent(r).y0  # below, never over a bar
    assert fig.axes[0].get_ylabel() == "preference pairs" and fig.axes[1].get_ylabel() == "words per output"


def test_rgd_sweep_says_when_too_few_queries_for_a_ci_and_draws_one_otherwise():
    def dec(n_q):
        rows = [(p, m, w, f"q{i}", 0.1 * (i % 3) + 0.05 * w) for p in ("pol-a", "pol-b") for m in ("bt", "pal", "vpl")
                for w in (0.0, 0.1, 1.0) for i in range(n_q)]
        return pd.DataFrame(rows, columns=["policy", "method", "w", "query_id", "rouge1"]).assign(
            task="LaMP-4", user="u1", calibrated=False)
    fig, _ = plots.plot_rgd_sweep(dec(2))
    _printable(fig)
    assert "too few for a CI" in fig.get_suptitle() and not fig.axes[0].collections
    fig, _ = plots.plot_rgd_sweep(dec(6))
    assert "95% CI" in fig.get_suptitle() and len(fig.axes[0].collections) == 2  # a band per policy


def test_curves_are_print_sized_with_row_and_column_names():
    rows = [{"task": t, "user_group": "seen", "normalise": False, "definition": d, "method": m, "rm": m, "w": w,
             "policy_acc": 0.5, "base_acc": 0.4} for t in ("LaMP-4", "LaMP-5", "tldr") for d in ("cumulative", "x")
            for m in METHODS for w in (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
    fig = curves.plot_policy_accuracy_vs_w(pd.DataFrame(rows))
    texts = _printable(fig)
    assert fig.get_figwidth() == style.DOUBLE and [ax.get_title() for ax in fig.axes[:3]] == ["LaMP-4", "LaMP-5", "tldr"]
    assert {"cumulative", "x"} <= set(texts)
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["0", "0.125", "1", "8"]
