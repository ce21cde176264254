"""Figures of generation quality (notebooks 05 and 06): base vs best ICL vs best RGD (:func:`plot_best_systems`),
the ICL sweep over k (:func:`plot_sweep`) and ROUGE against policy size (:func:`plot_size`).

Every ROUGE mean is drawn with its 95% bootstrap CI. A system whose validation chose the base policy (ICL k = 0,
RGD w = 0) is an open marker: it *is* the base policy. Policies of different families (an instruct and a base
model) are never joined by a line: that would draw a scaling trend the sizes cannot show.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..core import models
from .style import DOUBLE, MUTED, SINGLE, interval_err, label, legend_below, limits, panels, suptitle

SYSTEMS = {"base": "base policy", "icl": "best ICL", "rgd": "best RGD"}
SYSTEM_MARKERS = {"base": "o", "icl": "s", "rgd": "^"}
FAMILY_MARKERS = ["o", "s", "D", "^", "v", "P"]
FELL_BACK = "open: validation chose the base policy (k = 0 / w = 0)"


def _system_colours():
    import seaborn as sns

    return dict(zip(SYSTEMS, sns.color_palette("colorblind", 3)))


def family(policy: str) -> str:
    """The family of a policy: its name without the size ("qwen2.5-7b" -> "qwen2.5"), with "instruct" or "base"
    from the registry's chat template (unknown names: the name itself, a family of one)."""
    spec = models.REGISTRY.get(policy)
    stem = re.sub(r"-\d+(\.\d+)?[mb]$", "", policy, flags=re.I)
    if spec is None or stem == policy:
        return policy
    return f"{stem} ({'instruct' if spec.chat_template else 'base'})"


def _fell_back(d: pd.DataFrame) -> np.ndarray:
    return ((d.system != "base") & (pd.to_numeric(d.param, errors="coerce") == 0)).to_numpy()


def _points(ax, x, d: pd.DataFrame, metric: str, colour, marker: str, lab: str | None = None):
    """Means with 95% CI whiskers; an open marker where the system fell back to the base policy."""
    y = d[metric].to_numpy(float)
    err = interval_err(y, d[f"{metric}_lo"].to_numpy(float), d[f"{metric}_hi"].to_numpy(float)) \
        if f"{metric}_lo" in d else None
    open_ = _fell_back(d)
    ax.errorbar(x, y, yerr=err, fmt="none", ecolor=colour, elinewidth=0.8)
    ax.plot(x[~open_], y[~open_], marker, color=colour, ms=4.5, ls="", label=lab)
    ax.plot(x[open_], y[open_], marker, color=colour, mfc="white", mew=1.0, ms=4.5, ls="")


def plot_best_systems(best: pd.DataFrame, metric: str = "rouge1"):
    """Base vs best ICL vs best RGD (:func:`lib.report.results.best_systems`) per task, one panel per policy:
    test-query means with 95% bootstrap CIs; open markers where validation chose the base policy."""
    d = best.copy()
    tasks, pols = sorted(d.task.unique()), sorted(d.model.unique())
    width = SINGLE if len(pols) == 1 and len(tasks) <= 3 else DOUBLE
    fig, axes = panels(len(pols), 2 if width == DOUBLE else 1, width, 2.0, sharey=True)
    colours, off = _system_colours(), dict(zip(SYSTEMS, (-0.22, 0.0, 0.22)))
    for ax, m in zip(axes, pols):
        for s in SYSTEMS:
            g = d[(d.model == m) & (d.system == s)].set_index("task").reindex(tasks).dropna(subset=[metric])
            x = np.array([tasks.index(t) for t in g.index], float) + off[s]
            _points(ax, x, g.reset_index(), metric, colours[s], SYSTEM_MARKERS[s], SYSTEMS[s])
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_xlim(-0.5, len(tasks) - 0.5)
        ax.grid(axis="x", visible=False)
        ax.set_title(f"policy {m}")
        ax.set_xlabel(label("task"))
    axes[0].set_ylim(*limits(pd.concat([d[metric], d.get(f"{metric}_hi", d[metric])]), metric))
    axes[0].set_ylabel(f"{label(metric)} (test queries)")
    h, lab = axes[0].get_legend_handles_labels()
    legend_below(fig, h, lab, ncol=3)
    suptitle(fig, f"Base policy vs best ICL vs best RGD: {label(metric)} (95% CI)\n({FELL_BACK})")
    return fig


def plot_sweep(summary: pd.DataFrame, system: str = "icl", metric: str = "rouge1", half: str = "test"):
    """ICL's sweep: ``metric`` against the number of examples k, one panel per task, one line per policy (colour,
    marker and dash differ), 95% CI whiskers; k = 0 is the base policy, the line's first point. ``summary``: per
    setting (:func:`lib.report.results.summarize`); with a ``half`` column only that half is drawn.

    Only ICL has a sweep: RGD decodes each reward model at its one deployed w (notebook 04), and notebook 03's
    raw-w sweep is :func:`lib.report.plots.plot_rgd_sweep`."""
    if system != "icl":
        raise ValueError(f"plot_sweep: no sweep of system {system!r} to draw: only ICL's k is swept "
                         "(RGD decodes at its one deployed w; notebook 03's w sweep is plots.plot_rgd_sweep)")
    s = summary[summary.half == half] if "half" in summary else summary
    if s.empty or not (s.system == "icl").any():
        raise ValueError(f"plot_sweep: no ICL rows{f' in the {half!r} half' if 'half' in summary else ''}")
    d = pd.concat([s[s.system == "base"].assign(param=0.0), s[s.system == "icl"]])
    d["param"] = d.param.astype(float)
    tasks, pols, ks = sorted(d.task.unique()), sorted(d.model.unique()), sorted(d.param.unique())
    width = SINGLE if len(tasks) == 1 else DOUBLE
    fig, axes = panels(len(tasks), 3, width, 1.9, sharey=True)
    import seaborn as sns

    pal, dashes = sns.color_palette("colorblind", len(pols)), ["-", "--", ":", "-."]
    pos = {k: i for i, k in enumerate(ks)}  # k on an ordinal axis: 0 1 2 4 evenly spaced
    for ax, t in zip(axes, tasks):
        for p_i, p in enumerate(pols):
            g = d[(d.task == t) & (d.model == p)].sort_values("param")
            x = np.array([pos[k] for k in g.param]) + 0.08 * (p_i - (len(pols) - 1) / 2)
            y = g[metric].to_numpy(float)
            err = interval_err(y, g[f"{metric}_lo"].to_numpy(float), g[f"{metric}_hi"].to_numpy(float))
            ax.errorbar(x, y, yerr=err, color=pal[p_i], marker=("o", "s", "^", "D")[p_i % 4], ms=3.5,
                        ls=dashes[p_i % 4], lw=1.0, elinewidth=0.7, label=p)
        ax.set_xticks(range(len(ks)), [f"{k:g}" if k else "0\n(base)" for k in ks])
        ax.grid(axis="x", visible=False)
        ax.set_title(t)
        ax.set_xlabel("in-context examples k")
    axes[0].set_ylim(*limits(pd.concat([d[metric], d[f"{metric}_hi"]]), metric))
    where = f"{half} queries" if "half" in summary else "all queries"
    axes[0].set_ylabel(f"{label(metric)} ({where})")
    h, lab = axes[0].get_legend_handles_labels()
    legend_below(fig, h, lab, ncol=len(pols), title=label("model"))
    suptitle(fig, f"ICL: {label(metric)} against the number of examples k (k = 0: the base policy; 95% CI)")
    return fig


def plot_size(best: pd.DataFrame, metric: str = "rouge1"):
    """``metric`` against policy size (parameters, log scale) per task for base, best ICL and best RGD (colour),
    policy families marked by shape (:func:`family`), 95% CIs; lines join the sizes of one family only, so two
    families with one size each are two sets of points, not a trend."""
    d = best.dropna(subset=["params_m"]).copy()
    d["family"] = [family(m) for m in d.model]
    tasks, fams = sorted(d.task.unique()), sorted(d.family.unique())
    width = SINGLE if len(tasks) == 1 else DOUBLE
    fig, axes = panels(len(tasks), 3, width, 1.9, sharey=True)
    colours, fmark = _system_colours(), dict(zip(fams, FAMILY_MARKERS * 3))
    sizes = sorted(d.params_m.unique())
    for ax, t in zip(axes, tasks):
        for s_i, s in enumerate(SYSTEMS):
            for f in fams:
                g = d[(d.task == t) & (d.system == s) & (d.family == f)].sort_values("params_m")
                x = g.params_m.to_numpy(float) * (1 + 0.07 * (s_i - 1))  # dodge on the log axis
                if len(g) > 1:
                    ax.plot(x, g[metric], color=colours[s], lw=0.9)
                _points(ax, x, g, metric, colours[s], fmark[f])
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{v:g}M" for v in sizes])
        ax.minorticks_off()
        ax.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
        ax.set_xlabel(label("params_m"))
        ax.set_title(t)
    axes[0].set_ylim(*limits(pd.concat([d[metric], d.get(f"{metric}_hi", d[metric])]), metric))
    axes[0].set_ylabel(f"{label(metric)} (test queries)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[s]) for s in SYSTEMS]  # colour: system; shape: family
    handles += [Line2D([], [], color=MUTED, marker=fmark[f], ls="", ms=4.5) for f in fams]
    legend_below(fig, handles, list(SYSTEMS.values()) + fams, ncol=3 + (len(fams) if width == DOUBLE else 0))
    one = d.groupby("family").params_m.nunique().max() <= 1
    note = ("each family has one size here: no trend to read" if one else "lines join the sizes of one family")
    suptitle(fig, f"{label(metric)} against policy size (95% CI; {note})\n({FELL_BACK})")
    return fig
