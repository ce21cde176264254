"""One figure style and atomic figure/table writers shared by every notebook.

* :func:`set_theme` - the single seaborn theme of the project (call once per notebook).
* :func:`save_figure` - PNG (dpi 150) + PDF, each written atomically.
* :func:`save_table` - CSV + Markdown + LaTeX, each written atomically. The Markdown writer is
  a few lines here so the project does not depend on ``tabulate``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import atomic_path, write_text

DPI = 150


def interval_err(y, lo, hi) -> np.ndarray:
    """matplotlib's asymmetric ``yerr`` ([2, n]) of intervals ``[lo, hi]`` around estimates ``y``. A bound that
    equals its estimate up to rounding (a percentile bootstrap bound can sit a last bit past it) gives a bar of
    length 0, never a negative one, which matplotlib refuses; NaN bounds stay NaN (no bar)."""
    return np.clip(np.stack([np.asarray(y, float) - lo, np.asarray(hi, float) - y]), 0, None)


def set_theme(context: str = "paper", font_scale: float = 1.1) -> None:
    """The project's one seaborn theme (white grid, colour-blind palette, deterministic fonts)."""
    import matplotlib
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette="colorblind", font_scale=font_scale)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "pdf.fonttype": 42,
                                "svg.hashsalt": "prc", "axes.titleweight": "bold"})


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


# --- the project's figures (notebooks 04-06 call these; 06 saves them) ------------------------------
def setting_label(row) -> str:
    """Readable name of a system setting: "base", "ICL k=4", "RGD <rm> w=1"."""
    if row["system"] == "base":
        return "base"
    if row["system"] == "icl":
        return f"ICL k={int(row['param'])}"
    return f"RGD {row['rm']} w={row['param']:g}"


def plot_best_systems(best: pd.DataFrame, metric: str = "rouge1"):
    """Bars of base / best ICL / best RGD per task (and policy), with bootstrap CI whiskers if present."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    d = best.copy()
    d["setting"] = [setting_label(r) for _, r in d.iterrows()]
    tasks = sorted(d.task.unique())
    models_ = sorted(d.model.unique())
    fig, axes = plt.subplots(len(models_), 1, figsize=(2.2 + 2.2 * len(tasks), 3.2 * len(models_)), squeeze=False)
    for ax, m in zip(axes[:, 0], models_):
        s = d[d.model == m]
        sns.barplot(data=s, x="task", y=metric, hue="system", hue_order=["base", "icl", "rgd"], order=tasks, ax=ax)
        if f"{metric}_lo" in s:
            for bar_group, system in zip(ax.containers, ["base", "icl", "rgd"]):
                for bar, task in zip(bar_group, tasks):
                    r = s[(s.system == system) & (s.task == task)]
                    if len(r):
                        x = bar.get_x() + bar.get_width() / 2
                        ax.plot([x, x], [r[f"{metric}_lo"].iloc[0], r[f"{metric}_hi"].iloc[0]], color="k", lw=1)
        ax.set_title(f"policy {m}: base vs best ICL vs best RGD")
        ax.set_ylabel(metric.upper().replace("ROUGE", "ROUGE-"))
    fig.tight_layout()
    return fig


def plot_sweep(summary: pd.DataFrame, system: str, metric: str = "rouge1"):
    """ROUGE against the sweep parameter (ICL k or RGD w), one line per reward model, one panel per task."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    d = summary[summary.system == system].copy()
    d["param"] = d["param"].astype(float)
    hue = "rm" if system == "rgd" else "model"
    tasks = sorted(d.task.unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], tasks):
        sns.lineplot(data=d[d.task == t], x="param", y=metric, hue=hue, style="model", marker="o", ax=ax,
                     legend=ax is axes[0, -1])
        base = summary[(summary.system == "base") & (summary.task == t)]
        for _, b in base.iterrows():
            ax.axhline(b[metric], ls="--", color="grey", lw=1)
        ax.set_title(t)
        ax.set_xlabel("k (examples)" if system == "icl" else "w (reward weight)")
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.suptitle(f"{system.upper()} sweep (dashed: base policy)")
    fig.tight_layout()
    return fig


def plot_tau_scatter(df: pd.DataFrame, x: str, y: str, taus: pd.DataFrame | None = None, hue: str = "method",
                     col: str = "task", row: str | None = "policy"):
    """Scatter of one metric against another across reward models: a panel per ``col`` (and per ``row``
    when that column exists), its tau and CI in the title."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    cols = sorted(df[col].unique())
    rows = sorted(df[row].unique()) if row and row in df else [None]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols), 3.2 * len(rows)), squeeze=False)
    hue_order = sorted(df[hue].unique())
    for i, rv in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            d = df[(df[col] == c) & ((df[row] == rv) if rv is not None else True)]
            sns.scatterplot(data=d, x=x, y=y, hue=hue, hue_order=hue_order, ax=ax, legend=(i, j) == (0, len(cols) - 1))
            title = str(c) if rv is None else f"{c} | {rv}"
            if taus is not None:
                t = taus[(taus[col] == c) & ((taus[row] == rv) if rv is not None and row in taus else True)]
                if len(t):
                    r = t.iloc[0]
                    title += f"\ntau={r.tau:.2f} [{r.ci_lo:.2f}, {r.ci_hi:.2f}], n={int(r.n)}"
            ax.set_title(title, fontsize="small")
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.tight_layout()
    return fig


def plot_size(best: pd.DataFrame, metric: str = "rouge1"):
    """ROUGE against policy size (parameters, log scale) for base, best ICL and best RGD, per task."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    tasks = sorted(best.task.unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], tasks):
        sns.lineplot(data=best[best.task == t], x="params_m", y=metric, hue="system", hue_order=["base", "icl", "rgd"],
                     marker="o", ax=ax, legend=ax is axes[0, -1])
        ax.set_xscale("log")
        sizes = sorted(best.params_m.dropna().unique())
        ax.set_xticks(sizes, [f"{s:g}M" for s in sizes])  # only the sizes run: no crowded log-scale labels
        ax.minorticks_off()
        ax.set_xlabel("policy parameters")
        ax.set_title(t)
    fig.tight_layout()
    return fig


def plot_tau_points(taus: pd.DataFrame, x: str = "task", hue: str = "metric", col: str = "policy",
                    title: str = "Kendall tau-b with 95% CI"):
    """tau point estimates with CI whiskers, one panel per ``col``, dodged by ``hue`` (0 dashed)."""
    import matplotlib.pyplot as plt

    cols = sorted(taus[col].unique())
    xs, hues = list(dict.fromkeys(sorted(taus[x].unique()))), list(dict.fromkeys(taus[hue]))
    fig, axes = plt.subplots(1, len(cols), figsize=(1.2 + 1.3 * len(xs) * len(cols), 3.4), squeeze=False, sharey=True)
    width = 0.8 / max(len(hues), 1)
    for ax, c in zip(axes[0], cols):
        for h_i, h in enumerate(hues):
            d = taus[(taus[col] == c) & (taus[hue] == h)].set_index(x).reindex(xs)
            pos = np.arange(len(xs)) + (h_i - (len(hues) - 1) / 2) * width
            y = d.tau.to_numpy(float)
            err = interval_err(y, d.ci_lo.to_numpy(float), d.ci_hi.to_numpy(float))
            ax.errorbar(pos, y, yerr=np.nan_to_num(err), fmt="o", capsize=2, label=h)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(xs)), xs, rotation=30, ha="right")
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(str(c))
        ax.set_ylabel("Kendall tau-b")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small", title=hue)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_tau_vs_w(taus: pd.DataFrame, hue: str = "task", col: str = "policy", row: str = "definition"):
    """Kendall tau (RM vs policy accuracy) at each fixed w, one line per ``hue`` with its 95% CI as whiskers,
    log-scaled w: how much the agreement depends on the reward weight (rows with w = "selected" are ignored)."""
    import matplotlib.pyplot as plt

    t = taus[pd.to_numeric(taus.w, errors="coerce").notna()].copy()
    t["w"] = t.w.astype(float)
    cols, rows = sorted(t[col].unique()), sorted(t[row].unique())
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.2 * len(cols), 3.0 * len(rows)), squeeze=False,
                             sharex=True, sharey=True)
    hues = sorted(t[hue].unique())
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax = axes[i, j]
            for h_i, h in enumerate(hues):
                d = t[(t[row] == rv) & (t[col] == cv) & (t[hue] == h)].sort_values("w")
                x = d.w.to_numpy() * (1 + 0.04 * (h_i - (len(hues) - 1) / 2))  # small dodge on the log axis
                y = d.tau.to_numpy(float)
                err = interval_err(y, d.ci_lo.to_numpy(float), d.ci_hi.to_numpy(float))
                ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", ms=3, capsize=2, lw=1, label=h)
            ax.axhline(0, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_xticks(sorted(t.w.unique()), [f"{w:g}" for w in sorted(t.w.unique())])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{cv} | {rv}", fontsize="small")
            if i == len(rows) - 1:
                ax.set_xlabel("w (calibrated, log scale)")
            if j == 0:
                ax.set_ylabel("tau(RM acc, policy acc)")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small", title=hue)
    fig.tight_layout()
    return fig


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
    group and split (left), words of the chosen against the rejected output (right)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    lengths = pair_lengths(pairs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    groups = pairs.assign(**{"users / split": pairs.user_group + " users, " + pairs.split})
    sns.countplot(groups.sort_values("users / split"), x="task", hue="users / split", ax=axes[0])
    axes[0].set_title("Pref-LaMP pairs")
    sns.boxplot(lengths, x="task", y="words", hue="side", ax=axes[1])
    axes[1].set_title("output length (words)")
    fig.tight_layout()
    return fig


def plot_rgd_sweep(dec: pd.DataFrame):
    """Notebook 03's raw-``w`` sweep (``dec``: rgd/decodes.csv, :func:`lib.core.schema.read_decodes`): ROUGE-1 against
    ``w`` (log scale) per method, one panel per policy, dashed: greedy (``w = 0``). Returns ``(fig, name)``,
    name ``rgd_w_sweep_<raw|calibrated>_<task>``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    policies, task, user = list(pd.unique(dec.policy)), dec.task.iloc[0], dec.user.iloc[0]
    scale = "calibrated" if bool(dec.calibrated.iloc[0]) else "raw"
    fig, axes = plt.subplots(1, len(policies), figsize=(4.6 * len(policies), 3.4), squeeze=False, sharey=True)
    for ax, policy in zip(axes[0], policies):
        d = dec[(dec.policy == policy) & (dec.w > 0)].groupby(["method", "w"]).rouge1.mean().reset_index()
        sns.lineplot(d, x="w", y="rouge1", hue="method", marker="o", ax=ax, legend=ax is axes[0, -1])
        ax.axhline(dec[(dec.policy == policy) & (dec.w == 0)].rouge1.mean(), color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(f"{policy}: {scale} rewards")
        ax.set_xlabel("w (log scale)")
    if axes[0, -1].get_legend():
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.suptitle(f"RGD ROUGE-1 vs reward weight, {task}, user {user} (dashed: greedy)")
    fig.tight_layout()
    return fig, f"rgd_w_sweep_{scale}_{task}"


def plot_accuracy(table, prefix_train: bool = False):
    """Notebook 02's bar plot of RM accuracy (:func:`lib.rewards.accuracy_table`): one panel per task (columns)
    and user group (rows: seen, unseen), one bar per method and backbone with its 95% CI, dashed: chance."""
    import matplotlib.pyplot as plt

    t = table[table.prefix_train == prefix_train]
    tasks, methods, backbones = list(dict.fromkeys(t.task)), list(dict.fromkeys(t.method)), list(dict.fromkeys(t.backbone))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6), squeeze=False, sharey=True)
    width = 0.8 / max(len(backbones), 1)
    for j, task in enumerate(tasks):
        for i, group in enumerate(("seen", "unseen")):
            ax = axes[i, j]
            for b, bb in enumerate(backbones):
                s = t[(t.task == task) & (t.backbone == bb)].set_index("method").reindex(methods)
                y = s[f"rm_acc_{group}"].to_numpy(float)
                err = interval_err(y, s[f"ci_lo_{group}"].to_numpy(float), s[f"ci_hi_{group}"].to_numpy(float))
                ax.bar(np.arange(len(methods)) + (b - (len(backbones) - 1) / 2) * width, y, width, yerr=err,
                       capsize=2, label=bb)
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_xticks(np.arange(len(methods)), methods, rotation=35, ha="right")
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{task} - {group} users")
            if j == 0:
                ax.set_ylabel("RM accuracy")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, title="backbone", loc="upper center", ncol=len(backbones), bbox_to_anchor=(0.5, 1.06))
    return fig
