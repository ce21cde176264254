"""What every figure shares: the theme, print sizes, human labels, the caption of a tau cell, and helpers that
keep dots and whiskers readable.

Figures are drawn at the width a paper prints them, :data:`SINGLE` (one 85 mm column, 3.35 in) or :data:`DOUBLE`
(the 7 in text width), so the font sizes of :func:`set_theme` (7-9 pt) are the printed sizes: nothing is scaled
down on the page. A number with a 95% CI is drawn with its whisker; a tau cell without a number says why, in
the words of the protocol's ``status`` (:mod:`lib.evaluation.tau_stats`), never "nan".
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

SINGLE, DOUBLE = 3.35, 7.0  # inches: one 85 mm column, the full text width
FONTS = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9}
MUTED = "0.45"  # the colour of "no number" text and markers
NO_NUMBER = "x"  # the marker of a cell without a number

# column name -> axis label a reader understands
LABELS = {"rm_acc": "RM accuracy", "rm_acc_seen": "RM accuracy (seen users)",
          "rm_acc_unseen": "RM accuracy (unseen users)", "policy_acc": "policy accuracy",
          "rouge1": "ROUGE-1", "rougeL": "ROUGE-L", "tau": "Kendall τ-b", "params_m": "policy parameters",
          "reward_margin": "calibrated reward margin", "task": "dataset", "method": "RM method", "policy": "policy",
          "model": "policy", "backbone": "backbone", "definition": "policy-accuracy definition",
          "metric": "upstream metric", "system": "system", "words": "words per output"}
ACCURACIES = {"rm_acc", "rm_acc_seen", "rm_acc_unseen", "policy_acc"}  # in [0, 1], chance 0.5


def set_theme(context: str = "paper", font_scale: float = 1.0) -> None:
    """The project's one theme: seaborn's white grid and colour-blind palette, print-size fonts (:data:`FONTS`),
    deterministic files (PDF fonts embedded as TrueType, no hash salt)."""
    import matplotlib
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette="colorblind", font_scale=font_scale)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "pdf.fonttype": 42,
                                "svg.hashsalt": "prc", "axes.titleweight": "bold", "grid.linewidth": 0.5,
                                "lines.linewidth": 1.0, "lines.markersize": 4, "errorbar.capsize": 1.5,
                                **{k: v * font_scale for k, v in FONTS.items()}})


def label(col: str) -> str:
    """The axis label of a column (``rm_acc_seen`` -> "RM accuracy (seen users)"); unknown names lose their
    underscores."""
    return LABELS.get(col, str(col).replace("_", " "))


def interval_err(y, lo, hi) -> np.ndarray:
    """matplotlib's asymmetric ``yerr`` ([2, n]) of intervals ``[lo, hi]`` around estimates ``y``. A bound that
    equals its estimate up to rounding (a percentile bootstrap bound can sit a last bit past it) gives a bar of
    length 0, never a negative one, which matplotlib refuses; NaN bounds stay NaN (no bar)."""
    return np.clip(np.stack([np.asarray(y, float) - lo, np.asarray(hi, float) - y]), 0, None)


def num(v: float, digits: int = 2) -> str:
    """``v`` with a typographic minus."""
    return f"{v:.{digits}f}".replace("-", "\u2212")


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) != ""


def tau_text(row, n: bool = True) -> str:
    """The caption of one tau cell (a row with ``tau``, ``ci_lo``, ``ci_hi`` and optionally ``p_exact``, ``status``,
    ``n``): "τ = 0.68 [−0.03, 0.92]", "τ = 0.60, exact p = 0.17" (no CI with few models), or why there is no
    number, in the protocol's words: "no τ: too small (18 pairs < 20)", "no τ: undefined (constant policy
    accuracy)". A "no CI: ..." status keeps the estimate. Never prints "nan"."""
    get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
    status = str(get("status", "")) if _present(get("status", "")) else ""
    kind, _, detail = status.partition(": ")
    tau, lo, hi, p = (get(k, float("nan")) for k in ("tau", "ci_lo", "ci_hi", "p_exact"))
    size = f", n = {int(get('n'))}" if n and _present(get("n", None)) else ""
    if not _present(tau) or kind in ("too small", "undefined"):
        why = f"{kind} ({detail})" if detail else (status or "not computed")
        return f"no τ: {why}"
    text = f"τ = {num(tau)}"
    if _present(lo) and _present(hi):
        text += f" [{num(lo)}, {num(hi)}]"
    elif _present(p):
        text += f", exact p = {p:.2f}"
    elif status:
        text += f" ({status})"
    return text + size


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (panel titles at print size)."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) if len(text) > width else text


def spread_duplicates(x, y, step: float) -> np.ndarray:
    """x positions with the points that share one (x, y) spread sideways by ``step`` around their value (dots on
    the few values an accuracy over a handful of pairs takes would hide each other); unique points stay put."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = x.copy()
    key = pd.Series(list(zip(np.round(x, 9), np.round(y, 9))))
    for _, idx in key.groupby(key, sort=False).groups.items():
        idx = np.asarray(idx)
        if len(idx) > 1:
            out[idx] = x[idx] + (np.arange(len(idx)) - (len(idx) - 1) / 2) * step
    return out


def limits(values, col: str, min_span: float = 0.3, pad: float = 0.04) -> tuple[float, float]:
    """Axis limits for the values of ``col`` shared by every panel: an accuracy's range always holds chance
    (0.5) and spans at least ``min_span`` within [0, 1], so a constant reads as constant, not as noise zoomed to
    fill the panel; anything else starts at 0 (or below, for negative values)."""
    v = pd.to_numeric(pd.Series(np.ravel(values)), errors="coerce").dropna().to_numpy(float)
    if col in ACCURACIES:
        lo, hi = (min(v.min(), 0.5), max(v.max(), 0.5)) if len(v) else (0.0, 1.0)
        if hi - lo < min_span:
            mid = (lo + hi) / 2
            lo, hi = mid - min_span / 2, mid + min_span / 2
            lo, hi = (0.0, min_span) if lo < 0 else ((1 - min_span, 1.0) if hi > 1 else (lo, hi))
        return max(lo - pad, -pad), min(hi + pad, 1 + pad)
    if not len(v):
        return 0.0, 1.0
    lo, hi = min(v.min(), 0.0), max(v.max(), 0.0)
    span = (hi - lo) or 1.0
    return lo - (pad * span if lo < 0 else 0.0), hi + pad * 2 * span


def dodge(n: int, width: float = 0.8) -> np.ndarray:
    """Offsets of ``n`` dodged series around a category (total ``width``)."""
    step = width / max(n, 1)
    return (np.arange(n) - (n - 1) / 2) * step


def panels(n: int, ncols: int, width: float, panel_h: float, **kw):
    """A constrained-layout figure of ``n`` panels in rows of ``ncols`` (``width`` inches wide); unused cells
    are removed. Returns ``(fig, axes)``, ``axes`` a flat list of the ``n`` panels in reading order."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, 0.55 + panel_h * nrows), squeeze=False,
                             layout="constrained", **kw)
    flat = list(grid.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def row_title(ax, text: str, max_chars: int = 16) -> None:
    """The name of a panel row, on the right of its last panel (seaborn's margin titles), so a long name never
    crowds the y labels; a name longer than ``max_chars`` breaks after an underscore."""
    text = str(text)
    if len(text) > max_chars and "_" in text[1:max_chars]:
        cut = text.rindex("_", 0, max_chars) + 1
        text = text[:cut] + "\n" + text[cut:]
    ax.annotate(text, (1.0, 0.5), xycoords="axes fraction", xytext=(4, 0), textcoords="offset points",
                rotation=270, ha="left", va="center", fontsize=7.5, fontweight="bold", multialignment="center")


def w_ticks(ax, ws, log: bool) -> None:
    """x ticks at (at most four) values of the w grid itself, spaced evenly from the largest down (0 kept on a
    symlog axis), never matplotlib's crowded 2x10^-1 labels."""
    import math as _m

    import matplotlib.pyplot as plt

    pos = sorted(w for w in set(ws) if w > 0)
    shown = pos[::-1][::max(1, _m.ceil(len(pos) / 3))][::-1]
    if not log and 0 in set(ws):
        shown = [0.0] + shown
    ax.set_xticks(shown, [f"{w:g}" for w in shown])
    ax.xaxis.set_minor_locator(plt.NullLocator())


def legend_below(fig, handles, labels, ncol: int | None = None, title: str | None = None):
    """One legend for the whole figure, below the panels (never over data)."""
    by = dict(zip(labels, handles))
    return fig.legend(list(by.values()), list(by.keys()), loc="outside lower center",
                      ncol=ncol or min(len(by), 4), title=title, frameon=False, columnspacing=1.2,
                      handletextpad=0.4)


def suptitle(fig, text: str):
    """The figure's caption-ready title, each line wrapped to the figure's width at 9 pt."""
    chars = max(30, int(fig.get_figwidth() * 72 / 4.9))
    return fig.suptitle("\n".join(wrap(line, chars) for line in text.split("\n")))


def setting_label(row) -> str:
    """Readable name of a system setting: "base", "ICL k=4", "RGD <rm> w=1"."""
    if row["system"] == "base":
        return "base"
    if row["system"] == "icl":
        return f"ICL k={int(row['param'])}"
    return f"RGD {row['rm']} w={row['param']:g}"
