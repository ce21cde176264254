"""Figures of the protocol's curves over the reward weight ``w`` (notebook 04's tables, saved by notebook 06):
policy accuracy against ``w`` with the base policy's accuracy under the same definition, and the measured
steering strength (KL of the RGD next-token distribution from the base policy's) against ``w`` per method."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .style import DOUBLE, SINGLE, label, legend_below, row_title, suptitle, w_ticks
from .tau_plots import MARKERS

W_LABEL = "reward weight w (step-calibrated)"


def _grid(df: pd.DataFrame, col: str, row: str, height: float = 1.25):
    cols, rows = sorted(df[col].unique()), sorted(df[row].unique())
    width = SINGLE if len(cols) <= 2 else DOUBLE
    height = height if width == DOUBLE else 1.6  # a single column's panels are wider: keep them readable
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(width, 1.4 + height * len(rows)), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    return fig, axes, cols, rows


def _frame(ax, i: int, j: int, rows, cols, r, c, ylabel: str) -> None:
    """Column titles on the top row, the row's name in the left column's y label, x labels on the bottom row."""
    if i == 0:
        ax.set_title(str(c))
    if j == 0:
        ax.set_ylabel(ylabel)
    if j == len(cols) - 1:
        row_title(ax, r)
    if i == len(rows) - 1:
        ax.set_xlabel("w")


def plot_policy_accuracy_vs_w(pa: pd.DataFrame, user_group: str = "seen", policy: str | None = None):
    """Mean test-half policy accuracy over each method's reward models against ``w`` (raw scores), one panel per
    dataset (columns) and definition (rows); dashed: the base policy's accuracy under that definition. ``policy``:
    that policy's rows only (its own base line; notebook 04 draws one figure per policy); None: every row."""
    d = pa[(pa.user_group == user_group) & (~pa.normalise.astype(bool))]
    if policy is not None:
        d = d[d.policy == policy]
    if d.empty:
        raise ValueError(f"plot_policy_accuracy_vs_w: no raw-score rows for user group {user_group!r}"
                         + (f" and policy {policy!r}" if policy is not None else ""))
    d = d.groupby(["task", "definition", "method", "w"], sort=True).agg(
        policy_acc=("policy_acc", "mean"), base_acc=("base_acc", "first")).reset_index()
    fig, axes, cols, rows = _grid(d, "task", "definition")
    methods = sorted(d.method.unique())
    pal = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax, g = axes[i, j], d[(d.definition == r) & (d.task == c)]
            for m, gm in g.groupby("method", sort=True):
                ax.plot(gm.w, gm.policy_acc, marker=MARKERS[methods.index(m) % len(MARKERS)], ms=2.5, lw=1.0,
                        color=pal[m], label=m)
            if len(g):
                ax.axhline(g.base_acc.iloc[0], color="0.4", ls="--", lw=0.9, label="base policy (w = 0)")
            ax.set_xscale("symlog", linthresh=0.125)
            w_ticks(ax, d.w.unique(), log=False)
            ax.set_ylim(-0.02, 1.02)
            _frame(ax, i, j, rows, cols, r, c, label("policy_acc"))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    legend_below(fig, handles, labels, ncol=min(len(labels), 7 if len(cols) > 2 else 3), title=label("method"))
    who = f"{user_group} users" + (f", policy {policy}" if policy is not None else "")
    suptitle(fig, f"Policy accuracy against the {W_LABEL[:-1]}, symmetric log scale)\n({who}, "
                  "test half; mean over each method's reward models; dashed: the base policy)")
    return fig


def plot_kl_vs_w(kl: pd.DataFrame):
    """Measured steering strength (mean per-token KL(RGD || base), val half) against ``w`` > 0, one line per reward
    model coloured by method, one panel per dataset (columns) and policy (rows), log-log axes: with step
    calibration the methods' curves should lie together (one w, about one KL)."""
    d = kl[(kl.w > 0) & (kl.kl > 0)]
    if d.empty:
        raise ValueError("plot_kl_vs_w: no positive KL at any w > 0 (constant rewards everywhere?)")
    fig, axes, cols, rows = _grid(d, "task", "policy")
    methods = sorted(d.method.dropna().unique())
    pal = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax, g = axes[i, j], d[(d.policy == r) & (d.task == c)]
            for (m, _rm), gm in g.groupby(["method", "rm"], sort=True):
                ax.plot(gm.w, gm.kl, lw=0.9, alpha=0.75, color=pal[m], label=m,
                        ls=("-", "--", ":", "-.")[methods.index(m) % 4])  # dash too: legible in grey
            ax.set_xscale("log")
            ax.set_yscale("log")
            w_ticks(ax, d.w.unique(), log=True)
            _frame(ax, i, j, rows, cols, r, c, "KL, nats/token")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    legend_below(fig, handles, labels, ncol=min(len(labels), 6 if len(cols) > 2 else 3), title=label("method"))
    suptitle(fig, f"Measured steering strength KL(RGD ‖ base) against the {W_LABEL[:-1]}, log scale)\n"
                 "(val half; one line per reward model)")
    return fig


def spread(kl: pd.DataFrame) -> pd.DataFrame:
    """Per (task, policy, w): the ratio of the largest to the smallest method-mean KL, how far one w is from one
    strength (1 = equal)."""
    m = kl[kl.w > 0].groupby(["task", "policy", "w", "method"], sort=True).kl.mean()
    return m.groupby(["task", "policy", "w"]).agg(lambda s: float(s.max() / s.min()) if s.min() > 0 else np.inf) \
        .rename("kl_max_over_min").reset_index()
