"""Figures of Kendall tau cells (notebooks 04 and 06): the scatter behind each tau (:func:`plot_tau_scatter`),
tau estimates side by side (:func:`plot_tau_points`) and tau against the reward weight (:func:`plot_tau_vs_w`).

A cell without a number (the protocol's ``status``: too small, undefined, no CI) is drawn as such: its caption
says why (:func:`lib.report.style.tau_text`), an estimate without a CI is an open marker, and a missing estimate
is a grey "x" in a "no τ" band below the axis, its reason in the legend.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .style import (
    ACCURACIES,
    DOUBLE,
    MUTED,
    NO_NUMBER,
    SINGLE,
    interval_err,
    label,
    legend_below,
    limits,
    panels,
    row_title,
    spread_duplicates,
    suptitle,
    tau_text,
    wrap,
)

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
NO_TAU_Y = -1.22  # where a cell without an estimate is marked, below tau = -1
TAU_TICKS = [-1.0, -0.5, 0.0, 0.5, 1.0]


def _palette(keys):
    import seaborn as sns

    cols = sns.color_palette("colorblind", max(len(keys), 1))
    return {k: (cols[i % len(cols)], MARKERS[i % len(MARKERS)]) for i, k in enumerate(keys)}


def _errcols(df: pd.DataFrame, col: str):
    for lo, hi in ((f"{col}_lo", f"{col}_hi"), (f"ci_lo_{col.rsplit('_', 1)[-1]}", f"ci_hi_{col.rsplit('_', 1)[-1]}")):
        if lo in df and hi in df and col.startswith(("rouge", "rm_acc")):
            return lo, hi
    return None


def _tau_axis(ax, band: bool):
    """tau from -1 to 1 (0 dashed), plus a "no τ" band below -1 when some cell has no estimate."""
    ax.axhline(0, color=MUTED, lw=0.7, ls="--")
    ax.set_ylim(NO_TAU_Y - 0.13 if band else -1.08, 1.08)
    ticks, labels = TAU_TICKS + ([NO_TAU_Y] if band else []), [f"{t:g}".replace("-", "\u2212") for t in TAU_TICKS]
    ax.set_yticks(ticks, labels + (["no τ"] if band else []))
    if band:
        ax.axhspan(NO_TAU_Y - 0.13, -1.1, color="0.93", lw=0, zorder=0)


def plot_tau_scatter(df: pd.DataFrame, x: str, y: str, taus: pd.DataFrame | None = None, hue: str = "method",
                     col: str = "task", row: str | None = "policy", title: str | None = None,
                     width: float | None = None):
    """One metric against another across reward models (one dot each, coloured and shaped by ``hue``): a panel
    per ``col`` (columns) and ``row`` (rows, when that column exists), axes shared, its tau cell in the panel's
    caption (:func:`lib.report.style.tau_text`: the CI, the exact p, or why there is no tau). Accuracies keep
    chance in view and a constant looks constant (:func:`lib.report.style.limits`); dots on one value are spread
    sideways; a column ``<y>_lo``/``<y>_hi`` (e.g. ROUGE-1's bootstrap CI) is drawn as whiskers."""
    cols = sorted(df[col].unique())
    rows = sorted(df[row].unique()) if row and row in df else [None]
    width = width or (SINGLE if len(cols) <= 2 else DOUBLE)
    fig, axes = panels(len(cols) * len(rows), len(cols), width, 1.45 if width == DOUBLE else 2.0,
                       sharex=True, sharey=True)
    styles = _palette(sorted(df[hue].unique()))
    yerr = _errcols(df, y)
    xlim, ylim = limits(df[x], x), limits(pd.concat([df[y]] + ([df[yerr[1]]] if yerr else [])), y)
    step, spread = 0.018 * (xlim[1] - xlim[0]), False
    chars = max(16, int(width / len(cols) * 72 / 3.6))  # characters of a 6.5 pt caption line
    caps = {}
    if taus is not None:
        for rv in rows:
            for c in cols:
                t = taus[(taus[col] == c) & ((taus[row] == rv) if rv is not None and row in taus else True)]
                caps[c, rv] = wrap(tau_text(t.iloc[0]), chars) if len(t) else "no τ: no cell"
    lines = max([v.count("\n") + 1 for v in caps.values()] or [0])  # one caption height: titles align
    for i, rv in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i * len(cols) + j]
            d = df[(df[col] == c) & ((df[row] == rv) if rv is not None else True)].dropna(subset=[x, y])
            xs = spread_duplicates(d[x], d[y], step)
            spread |= bool((xs != d[x].to_numpy(float)).any())
            for h, (colour, marker) in styles.items():
                m = (d[hue] == h).to_numpy()
                err = interval_err(d[y][m], d[yerr[0]][m], d[yerr[1]][m]) if yerr else None
                ax.errorbar(xs[m], d[y][m], yerr=err, fmt=marker, color=colour, ms=3.5, elinewidth=0.6,
                            alpha=0.9, label=str(h))
            for ref, axline in ((x, ax.axvline), (y, ax.axhline)):
                if ref in ACCURACIES:
                    axline(0.5, color=MUTED, lw=0.6, ls=":")
            cap = caps.get((c, rv), "")
            if cap:
                ax.annotate(cap, (0.5, 1.0), xycoords="axes fraction", xytext=(0, 2 + 8.2 * lines),
                            textcoords="offset points", ha="center", va="top", fontsize=6.5,
                            color=MUTED if cap.startswith("no") else "0.1")
            ax.set_title(str(c) if i == 0 or rv is None else "", pad=3 + 8.2 * lines)
            if j == 0:
                ax.set_ylabel(f"{rv}\n{label(y)}" if rv is not None else label(y))
            if i == len(rows) - 1:
                ax.set_xlabel(label(x))
            if x in ACCURACIES:
                ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", "", "0.5", "", "1"])
    axes[0].set_xlim(*xlim)
    axes[0].set_ylim(*ylim)
    h, lab = axes[0].get_legend_handles_labels()
    legend_below(fig, h, lab, ncol=min(len(styles), 6 if width == DOUBLE else 3), title=label(hue))
    text = title or f"{label(y)[0].upper() + label(y)[1:]} against {label(x)} (one dot per reward model)"
    suptitle(fig, text + ("; dots on one value spread sideways" if spread else ""))
    return fig


def _no_tau_reasons(d: pd.DataFrame) -> str:
    """"no τ in 6 of 6 cells: undefined (a side is constant)" for the rows of ``d`` without a tau ("" if none)."""
    miss = d[d.tau.isna()]
    if miss.empty:
        return ""
    st = miss.get("status", pd.Series("", index=miss.index)).fillna("").astype(str)
    whys = pd.Series([tau_text({"status": s, "tau": float("nan")})[len("no τ: "):] for s in st]).value_counts(sort=False)
    return "; ".join(f"no τ in {v} of {len(d)} cells: {k}" for k, v in whys.items())


def _kinds(d: pd.DataFrame) -> str:
    """The kinds of status of the rows of ``d`` without a tau ("too small", "undefined: constant policy
    accuracy"): sizes dropped (they are in the table), so cells of one kind read as one reason."""
    st = d[d.tau.isna()].get("status", pd.Series(dtype=str)).fillna("").astype(str)
    kinds = [s.split(":")[0] if s.startswith("too small") else s for s in st if s] or ["not computed"]
    return "; ".join(dict.fromkeys(kinds))


def plot_tau_points(taus: pd.DataFrame, x: str = "task", hue: str = "metric", col: str = "policy",
                    title: str = "Kendall τ-b across reward models"):
    """tau estimates, one panel per ``col``, ``x`` categories dodged by ``hue`` (colour and marker), whiskers
    where a 95% CI exists (none with a handful of models: the exact p is in the table). A cell without a tau is
    a grey "x" in the "no τ" band, and the legend says why, with how many cells."""
    cols = sorted(taus[col].unique())
    xs, hues = sorted(taus[x].unique()), list(dict.fromkeys(taus[hue]))
    width = SINGLE if len(cols) * len(xs) <= 4 else DOUBLE
    fig, axes = panels(len(cols), len(cols), width, 2.0 + 0.13 * len(hues), sharey=True)
    has_any_ci = bool(taus.ci_lo.notna().any())
    styles, off = _palette(hues), dict(zip(hues, np.asarray(0.8 / max(len(hues), 1)) * (np.arange(len(hues)) - (len(hues) - 1) / 2)))
    band = bool(taus.tau.isna().any())
    for ax, c in zip(axes, cols):
        for h in hues:
            colour, marker = styles[h]
            d = taus[(taus[col] == c) & (taus[hue] == h)].set_index(x).reindex(xs)
            pos, y = np.arange(len(xs)) + off[h], d.tau.to_numpy(float)
            has_ci = ~(np.isnan(d.ci_lo.to_numpy(float)) | np.isnan(y))
            err = interval_err(y, d.ci_lo.to_numpy(float), d.ci_hi.to_numpy(float))
            ax.errorbar(pos[has_ci], y[has_ci], yerr=err[:, has_ci], fmt=marker, color=colour, ms=4, elinewidth=0.8)
            ax.plot(pos[~has_ci], y[~has_ci], marker, color=colour, ms=4, mew=1.0,
                    mfc="white" if has_any_ci else colour)  # open: no CI where other cells have one
            miss = np.isnan(y)
            ax.plot(pos[miss], np.full(miss.sum(), NO_TAU_Y), NO_NUMBER, color=colour, ms=4, mew=1.0)
        _tau_axis(ax, band)
        ax.set_xticks(np.arange(len(xs)), xs)
        for b in np.arange(len(xs) - 1) + 0.5:
            ax.axvline(b, color="0.85", lw=0.6)
        ax.grid(axis="x", visible=False)
        ax.set_title(str(c))
        ax.set_xlabel(label(x))
    axes[0].set_ylabel(label("tau"))
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for h in hues:
        colour, marker = styles[h]
        handles.append(Line2D([], [], ls="", marker=marker, color=colour, ms=4))
        why = _no_tau_reasons(taus[taus[hue] == h])
        labels.append(f"{h}" + (f" \u2014 {why}" if why else ""))
    n = int(taus["n"].max()) if "n" in taus and taus["n"].notna().any() else None
    note = "whiskers: 95% CI" if has_any_ci else \
        f"no CI with {n if n else 'so few'} reward models: the exact permutation p is in the table"
    if has_any_ci and (taus.tau.notna() & taus.ci_lo.isna()).any():
        note += "; open: no CI"
    legend_below(fig, handles, labels, ncol=1 if any("no τ" in s for s in labels) or width == SINGLE else 2,
                 title=label(hue))
    suptitle(fig, f"{title}\n({note})")
    return fig


def plot_tau_vs_w(taus: pd.DataFrame, hue: str = "task", col: str = "policy", row: str = "definition",
                  title: str = "Kendall τ-b (RM accuracy, policy accuracy) at each fixed w"):
    """Kendall tau (RM vs policy accuracy) at each fixed w, one line per ``hue`` (colour and marker) with its 95%
    CI as whiskers, log-scaled w, a panel per ``col`` (columns) and ``row`` (rows): how much the agreement
    depends on the reward weight (rows with w = "selected"/"deployed" are ignored). An estimate without a CI
    is an open marker; a ``hue`` without a tau at some w is a grey "x" in the "no τ" band; one without a tau at
    any w is named in the panel, with the reason."""
    import matplotlib.pyplot as plt

    t = taus[pd.to_numeric(taus.w, errors="coerce").notna()].copy()
    t["w"] = t.w.astype(float)
    cols, rows, hues = sorted(t[col].unique()), sorted(t[row].unique()), sorted(t[hue].unique())
    width = SINGLE if len(cols) == 1 else DOUBLE
    fig, axes = panels(len(rows) * len(cols), len(cols), width, 1.55, sharex=True, sharey=True)
    styles, ws = _palette(hues), sorted(t.w.unique())
    band = bool(t.groupby([row, col, hue]).tau.agg(lambda v: v.isna().any() and v.notna().any()).any())
    nowhere = {h: _kinds(t[t[hue] == h]) for h in hues if t[t[hue] == h].tau.isna().all()}  # named in the legend
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax, absent = axes[i * len(cols) + j], []
            for h_i, h in enumerate(hues):
                colour, marker = styles[h]
                d = t[(t[row] == rv) & (t[col] == cv) & (t[hue] == h)].sort_values("w")
                if h in nowhere or d.empty:
                    continue
                if d.tau.isna().all():
                    absent.append((h, _kinds(d)))
                    continue
                x = d.w.to_numpy() * (1 + 0.05 * (h_i - (len(hues) - 1) / 2))  # dodge on the log axis
                y, lo = d.tau.to_numpy(float), d.ci_lo.to_numpy(float)
                err = interval_err(y, lo, d.ci_hi.to_numpy(float))
                ax.plot(x, y, "-", color=colour, lw=0.9, label=str(h))
                ci = ~np.isnan(lo) & ~np.isnan(y)
                ax.errorbar(x[ci], y[ci], yerr=err[:, ci], fmt=marker, color=colour, ms=3.5, elinewidth=0.7)
                ax.plot(x[~ci & ~np.isnan(y)], y[~ci & ~np.isnan(y)], marker, color=colour, ms=3.5, mfc="white")
                ax.plot(x[np.isnan(y)], np.full(np.isnan(y).sum(), NO_TAU_Y), NO_NUMBER, color=colour, ms=3.5)
            if absent:
                by = pd.DataFrame(absent, columns=["h", "why"]).groupby("why", sort=False).h.apply(list)
                note = "\n".join(wrap(f"no τ at any w: {', '.join(map(str, v))} ({k})", 55) for k, v in by.items())
                ax.text(0.02, 0.13, note, transform=ax.transAxes, va="bottom", ha="left", fontsize=6.5, color=MUTED)
            _tau_axis(ax, band)
            ax.set_xscale("log")
            ax.set_xticks(ws, [f"{w:g}" for w in ws])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            if i == 0:
                ax.set_title(str(cv))
            if j == 0:
                ax.set_ylabel(label("tau"))
            if j == len(cols) - 1:
                row_title(ax, rv)
            if i == len(rows) - 1:
                ax.set_xlabel("reward weight w (step-calibrated, log scale)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=MUTED, marker=NO_NUMBER, ls="", ms=3.5) if h in nowhere else
               Line2D([], [], color=styles[h][0], marker=styles[h][1], ms=3.5, lw=0.9) for h in hues]
    labels = [f"{h}: no τ at any w ({nowhere[h]})" if h in nowhere else str(h) for h in hues]
    legend_below(fig, handles, labels, ncol=(1 if nowhere else min(len(hues), 6)) if width == DOUBLE else
                 (1 if nowhere else 3), title=label(hue))
    suptitle(fig, f"{title}\n(whiskers: 95% CI; open: no CI)")
    return fig
