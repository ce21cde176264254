"""Every figure of the project, and atomic figure/table writers shared by every notebook.

* :func:`set_theme` - the single theme of the project (call once per notebook; :mod:`lib.report.style` holds the
  print sizes, human labels and the caption of a tau cell every figure shares).
* :func:`save_figure` - PNG (dpi 150) + PDF, each written atomically.
* :func:`save_table` - CSV + Markdown + LaTeX, each written atomically. The Markdown writer is
  a few lines here so the project does not depend on ``tabulate``.
* the figures of the data and the reward models here (:func:`plot_preflamp_overview`, :func:`plot_accuracy`,
  :func:`plot_rgd_sweep`); of tau cells in :mod:`lib.report.tau_plots` and of generations in
  :mod:`lib.report.gen_plots`, both importable from here as before.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import atomic_path, write_text
from ..core.stats import bootstrap_ci
from .gen_plots import plot_best_systems, plot_size, plot_sweep  # noqa: F401  (notebooks call plots.<figure>)
from .style import (  # noqa: F401
    DOUBLE,
    MUTED,
    NO_NUMBER,
    SINGLE,
    interval_err,
    label,
    legend_below,
    limits,
    panels,
    set_theme,
    setting_label,
    suptitle,
)
from .tau_plots import MARKERS, plot_tau_points, plot_tau_scatter, plot_tau_vs_w  # noqa: F401

DPI = 150


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid figure/table name {name!r}: use a plain file stem like 'tau_table'")
    return name


def save_figure(fig, name: str, fig_dir) -> list[Path]:
    """Write ``fig`` as ``<fig_dir>/<name>.png`` (dpi 150) and ``.pdf``; returns both paths."""
    fig_dir = Path(fig_dir)
    out = []
    for ext in ("png", "pdf"):
        path = fig_dir / f"{_check_name(name)}.{ext}"
        # PDFs embed a creation date by default: drop it so reruns give identical files
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, bbox_inches="tight", metadata=meta)
        out.append(path)
    return out


def _fmt(v, floatfmt: str) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else format(v, floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """GitHub Markdown table of ``df`` (index dropped; floats with ``floatfmt``)."""
    cols = [str(c) for c in df.columns]
    rows = [[_fmt(v, floatfmt) for v in r] for r in df.itertuples(index=False, name=None)]
    num = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if n else ":---" for n in num) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, fig_dir, floatfmt: str = ".3f") -> list[Path]:
    """Write ``df`` as ``<name>.csv``, ``.md`` and ``.tex`` under ``fig_dir``; returns the paths."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"save_table({name!r}) needs a pandas DataFrame, got {type(df).__name__}")
    fig_dir = Path(fig_dir)
    stem = _check_name(name)
    df = df.reset_index(drop=True)
    csv = fig_dir / f"{stem}.csv"
    with atomic_path(csv, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    md = write_text(fig_dir / f"{stem}.md", to_markdown(df, floatfmt))
    tex_df = df.copy()
    for c in tex_df.columns:
        if pd.api.types.is_float_dtype(tex_df[c]):
            tex_df[c] = tex_df[c].map(lambda v: "" if pd.isna(v) else format(v, floatfmt))
    tex = write_text(fig_dir / f"{stem}.tex", tex_df.to_latex(index=False, escape=True))
    return [csv, md, tex]


# --- the figures of the data (01), the reward models (02) and the raw-w sweep (03) --------------------------
def pair_lengths(pairs: pd.DataFrame) -> pd.DataFrame:
    """Words of the chosen and the rejected output of each Pref-LaMP pair, long format: task, user, side, words."""
    words = pairs.assign(chosen_words=pairs.chosen.str.split().str.len(),
                         rejected_words=pairs.rejected.str.split().str.len())
    lengths = words.melt(id_vars=["task", "user"], value_vars=["chosen_words", "rejected_words"],
                         var_name="side", value_name="words")
    lengths["side"] = lengths.side.str.replace("_words", "")
    return lengths


def plot_preflamp_overview(pairs: pd.DataFrame):
    """Pref-LaMP at a glance (``pairs``: the records of :func:`lib.data.preflamp.load_pairs`): pairs per task by user
    group and split (left), words of the chosen against the rejected output (right); legends below the bars."""
    import seaborn as sns

    lengths = pair_lengths(pairs)
    fig, axes = panels(2, 2, DOUBLE, 2.3)
    groups = pairs.assign(group=pairs.user_group + " users, " + pairs.split)
    order = sorted(groups.group.unique(), key=lambda g: (not g.startswith("seen"), not g.endswith("train"), g))
    sns.countplot(groups, x="task", hue="group", hue_order=order, order=sorted(pairs.task.unique()), ax=axes[0])
    axes[0].set_title("Pairs per task, user group and split")
    axes[0].set_ylabel("preference pairs")
    sns.boxplot(lengths, x="task", y="words", hue="side", order=sorted(pairs.task.unique()), ax=axes[1],
                fliersize=2, linewidth=0.7)
    axes[1].set_title("Output length: chosen vs rejected")
    axes[1].set_ylabel(label("words"))
    for ax, ncol in zip(axes, (2, 2)):
        ax.set_xlabel(label("task"))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False, title=None)
    suptitle(fig, "Pref-LaMP at a glance")
    return fig


def plot_accuracy(table: pd.DataFrame, prefix_train: bool = False):
    """Notebook 02's RM accuracy (:func:`lib.rewards.accuracy_table`) as a method x dataset dot plot: one panel per
    backbone (columns) and user group (rows: seen, unseen), datasets down the panel, one dot per method (colour
    and shape) with its 95% bootstrap CI over pairs; dotted: chance. A cell where every seed was flagged has no
    estimate (grey "x" at the left); an open dot: some seeds were flagged and left out of the mean."""
    from matplotlib.lines import Line2D

    t = table[table.prefix_train == prefix_train]
    if t.empty:
        raise ValueError(f"plot_accuracy: no rows with prefix_train={prefix_train}")
    tasks, methods, backbones = sorted(t.task.unique()), list(dict.fromkeys(t.method)), list(dict.fromkeys(t.backbone))
    width = SINGLE if len(backbones) <= 2 and len(tasks) <= 2 else DOUBLE
    fig, axes = panels(2 * len(backbones), len(backbones), width,
                       max(0.35 + 0.055 * len(tasks) * len(methods), 0.95), sharex=True, sharey=True)
    import seaborn as sns

    pal = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    off = dict(zip(methods, (np.arange(len(methods)) - (len(methods) - 1) / 2) * 0.8 / len(methods)))
    flags = False
    for i, group in enumerate(("seen", "unseen")):
        for j, bb in enumerate(backbones):
            ax = axes[i * len(backbones) + j]
            for k, m in enumerate(methods):
                s = t[(t.backbone == bb) & (t.method == m)].set_index("task").reindex(tasks)
                x, y = s[f"rm_acc_{group}"].to_numpy(float), np.arange(len(tasks)) + off[m]
                err = interval_err(x, s[f"ci_lo_{group}"].to_numpy(float), s[f"ci_hi_{group}"].to_numpy(float))
                some = (s.degenerate.fillna(0).to_numpy(float) > 0) & ~np.isnan(x)
                ax.errorbar(x, y, xerr=err, fmt="none", ecolor=pal[m], elinewidth=0.7)
                mk = MARKERS[k % len(MARKERS)]
                ax.plot(x[~some], y[~some], mk, color=pal[m], ms=3.5, ls="")
                ax.plot(x[some], y[some], mk, color=pal[m], ms=3.5, mfc="white", ls="")
                ax.plot(np.full(np.isnan(x).sum(), 0.03), y[np.isnan(x)], NO_NUMBER, color=MUTED, ms=3.5)
                flags |= bool(some.any() or np.isnan(x).any())
            ax.axvline(0.5, color=MUTED, lw=0.7, ls=":")
            for b in np.arange(len(tasks) - 1) + 0.5:
                ax.axhline(b, color="0.85", lw=0.6)
            ax.grid(axis="y", visible=False)
            if i == 0:
                ax.set_title(bb)
            if j == 0:
                ax.set_ylabel(f"{group}\nusers", fontweight="bold", rotation=0, ha="right", va="center")
            if i == 1:
                ax.set_xlabel(label("rm_acc"))
    axes[0].set_xlim(0, 1.02)
    axes[0].set_yticks(range(len(tasks)), tasks)
    axes[0].set_ylim(len(tasks) - 0.5, -0.5)
    handles = [Line2D([], [], marker=MARKERS[k % len(MARKERS)], color=pal[m], ls="", ms=4) for k, m in enumerate(methods)]
    labels = list(methods)
    if flags:
        handles += [Line2D([], [], marker="o", color=MUTED, mfc="white", ls="", ms=4),
                    Line2D([], [], marker=NO_NUMBER, color=MUTED, ls="", ms=4)]
        labels += ["some seeds flagged", "no estimate: every seed flagged"]
    legend_below(fig, handles, labels, ncol=min(len(labels), 6 if width == DOUBLE else 3), title=label("method"))
    suptitle(fig, f"RM accuracy on held-out pairs by method and dataset (95% CI over pairs"
                 f"{'; trained with prefixes' if prefix_train else ''})")
    return fig


def plot_rgd_sweep(dec: pd.DataFrame, min_ci: int = 5, n_boot: int = 1000, seed: int = 0):
    """Notebook 03's raw-``w`` sweep (``dec``: rgd/decodes.csv, :func:`lib.core.schema.read_decodes`): ROUGE-1 of one
    user's queries against ``w`` (log scale), one panel per method, one line per policy (colour, marker, dash)
    with its greedy decoding (``w = 0``) as a thin line of the same colour. With at least ``min_ci`` queries the
    band is the 95% bootstrap CI over queries; with fewer the title says there is none. Returns ``(fig,
    name)``, name ``rgd_w_sweep_<raw|calibrated>_<task>``."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    policies, methods = list(pd.unique(dec.policy)), sorted(dec.method[dec.w > 0].unique())
    task, user = dec.task.iloc[0], dec.user.iloc[0]
    scale = "calibrated" if bool(dec.calibrated.iloc[0]) else "raw"
    n_q = int(dec[dec.w > 0].groupby(["policy", "method", "w"]).rouge1.size().min())
    fig, axes = panels(len(methods), 3, DOUBLE if len(methods) > 2 else SINGLE, 1.5, sharex=True, sharey=True)
    pal, ws = sns.color_palette("colorblind", len(policies)), sorted(dec.w[dec.w > 0].unique())
    for ax, m in zip(axes, methods):
        for p_i, p in enumerate(policies):
            g = dec[(dec.policy == p) & (dec.method == m) & (dec.w > 0)].groupby("w").rouge1
            mean = g.mean()
            ax.plot(mean.index, mean.to_numpy(), marker=MARKERS[p_i % len(MARKERS)], ms=3,
                    ls=("-", "--", ":")[p_i % 3], color=pal[p_i], lw=1.0)
            if n_q >= min_ci:
                ci = np.array([bootstrap_ci(v.to_numpy(float), n_boot=n_boot, seed=seed) for _, v in g])
                ax.fill_between(mean.index, ci[:, 0], ci[:, 1], color=pal[p_i], alpha=0.15, lw=0)
            ax.axhline(dec[(dec.policy == p) & (dec.w == 0)].rouge1.mean(), color=pal[p_i], lw=0.9, alpha=0.8,
                       ls=(0, (1, 1.5)))
        ax.set_xscale("log")
        ax.set_xticks(ws, [f"{w:g}" for w in ws])
        ax.minorticks_off()
        ax.set_title(m)
    for ax in axes[-min(3, len(axes)):]:
        ax.set_xlabel(f"w ({scale}, log scale)")
    for ax in axes[::3]:
        ax.set_ylabel(label("rouge1"))
    axes[0].set_ylim(*limits(dec.rouge1, "rouge1"))
    handles = [Line2D([], [], color=pal[i], marker=MARKERS[i % len(MARKERS)], ms=3, ls=("-", "--", ":")[i % 3])
               for i in range(len(policies))]
    handles += [Line2D([], [], color=MUTED, lw=0.9, ls=(0, (1, 1.5)))]
    legend_below(fig, handles, [str(p) for p in policies] + ["greedy (w = 0), same colour"], ncol=len(policies) + 1)
    ci_note = "band: 95% CI over queries" if n_q >= min_ci else f"mean of {n_q} queries: too few for a CI"
    suptitle(fig, f"RGD with {scale} rewards: ROUGE-1 against w, {task}, user {user} ({ci_note})")
    return fig, f"rgd_w_sweep_{scale}_{task}"
