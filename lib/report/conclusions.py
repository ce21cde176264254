"""What a run shows and what it cannot show, in sentences computed from its own tables (notebooks 02, 04 and 05
end with one), and the paper's claims beside this run's numbers (:func:`paper_vs_run`: notebook 06, summary.md and
the README's results block).

The paper's numbers live in :data:`PAPER` only (arXiv 2512.23067, abstract; v1 where it differs), cited as the
paper's; every other number in these texts is read from the tables passed in, so a text never claims what its run
did not measure. :func:`full_text` prints a whole table for a kept headline cell (nbval compares all of it).
"""
from __future__ import annotations

import math

import pandas as pd

from ..evaluation.tau_stats import MIN_SIZES
from .plots import to_markdown

PAPER = {
    "tau": {"claim": "Kendall tau(RM accuracy, policy accuracy) across reward models",
            "paper": "0.08-0.31 across three datasets", "lo": 0.08, "hi": 0.31},
    "decoupling": {"claim": "RM-accuracy gaps between methods vs their generation quality",
                   "paper": "20-point RM-accuracy differences, almost identical output quality", "gap_points": 20},
    "icl": {"claim": "ICL minus the best reward-guided method (ROUGE-1 points)",
            "paper": "about +3 at 7B (3-5 in v1); ICL ahead of every RGD method from 3B",
            "points": 3.0, "min_params_m": 3000},
}
DEPLOY_DEFINITION = "rgd_likelihood_smoothed"  # notebook 04's deployment criterion (its `deploy_definition`)


def full_text(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """Every row and column of ``df`` as fixed-width text, floats with ``floatfmt``, NaN blank, no index: what a
    kept headline cell prints, so that nbval compares the whole table (a pandas repr truncates past 60 rows)."""
    return df.to_string(index=False, float_format=lambda v: format(v, floatfmt), na_rep="", max_rows=None,
                        max_cols=None)


def _n(x: float, fmt: str = ".2f") -> str:
    return format(x, fmt)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ci(r, fmt: str = ".2f", sign: str = "") -> str:
    lo, hi = (float(r.ci_lo), float(r.ci_hi))
    return "" if math.isnan(lo) or math.isnan(hi) else f" [{lo:{sign}{fmt}}, {hi:{sign}{fmt}}]"


def corpus_of(P) -> str:
    """The corpus of a run's Pref-LaMP build (its manifest's ``corpus``), or "none" for a profile without one."""
    from ..data.preflamp import load_manifest

    return load_manifest(P.preflamp).get("corpus", "?") if (P.preflamp / "manifest.json").exists() else "none"


def corpus_note(corpus: str) -> str:
    """What the data are, from the Pref-LaMP manifest's ``corpus`` ("none": a profile of preference sets only)."""
    if corpus == "synthetic":
        return ("The users are synthetic (planted writing rules; synthetic preference sets in the published layouts): "
                "these numbers check the pipeline; they are not the paper's numbers.")
    if corpus == "none":
        return "Preference sets only (no Pref-LaMP corpus in this profile)."
    return f"Pref-LaMP corpus `{corpus}`."


# --- notebook 02 --------------------------------------------------------------------------------------------
def rm_conclusion(acc: pd.DataFrame, corpus: str, col: str = "rm_acc_seen") -> str:
    """Notebook 02's conclusion from its RM accuracy table (:func:`lib.rewards.accuracy_table`): how far the methods'
    accuracies spread, how large the gaps between methods are within one dataset (the paper's 20-point gaps), how
    wide a cell's CI is, how many seeds were flagged, and what RM accuracy cannot tell."""
    ok = acc.dropna(subset=[col])
    if ok.empty:
        return f"**What this run shows.** No cell has an RM accuracy ({col} is empty everywhere). {corpus_note(corpus)}"
    means = ok.groupby("method")[col].mean().sort_values()
    cell = ["task", "backbone", "prefix_train"]
    gaps = ok.groupby(cell)[col].agg(lambda s: s.max() - s.min())
    top = gaps.idxmax()
    g = ok.set_index(cell).loc[[top]].reset_index().sort_values(col, kind="stable")
    lo_m, hi_m = g.iloc[0], g.iloc[-1]
    big = int((gaps >= PAPER["decoupling"]["gap_points"] / 100).sum())
    bt_best = ok.loc[ok.groupby(cell)[col].idxmax()].method.eq("bt").sum() if "bt" in set(ok.method) else None
    width = (ok[col.replace("rm_acc", "ci_hi")] - ok[col.replace("rm_acc", "ci_lo")]).median()
    seeds, flagged = int(acc.seeds.sum()), int(acc.degenerate.sum())
    group = col.replace("rm_acc_", "")
    shows = (f"**What this run shows.** The methods' mean RM accuracy ({group} users, test pairs; over "
             f"{_count(ok.task.nunique(), 'dataset')}, {_count(ok.backbone.nunique(), 'backbone')} and the training "
             "variants) spans "
             f"{_n(means.iloc[0])} ({means.index[0]}) to {_n(means.iloc[-1])} ({means.index[-1]}). Within one dataset "
             f"and backbone the methods differ by up to {100 * gaps.max():.0f} points ({top[0]}, {top[1]}: "
             f"{hi_m.method} {_n(hi_m[col])} vs {lo_m.method} {_n(lo_m[col])}); {big} of {len(gaps)} such cells have a "
             f"gap of {PAPER['decoupling']['gap_points']} points or more, the size of the paper's gaps.")
    if bt_best is not None:
        shows += f" The non-personalised `bt` is the best method in {int(bt_best)} of {len(gaps)} cells."
    shows += (f" {flagged} of {seeds} trained seeds are flagged degenerate and left out of the means."
              if flagged else f" None of the {seeds} trained seeds is flagged degenerate.")
    cannot = (f"**What it cannot show.** The median 95% CI of one cell spans {100 * width:.0f} points (bootstrap over "
              "test pairs, seeds averaged, so seed variance is not in it): two cells closer than that are not told "
              "apart. RM accuracy ranks finished responses; whether that ranking survives decoding is notebook 04's "
              "question (policy accuracy) and whether it predicts what users get is notebook 05's. "
              + corpus_note(corpus))
    return shows + "\n\n" + cannot


# --- notebook 04 --------------------------------------------------------------------------------------------
def _tau_cells(taus: pd.DataFrame) -> dict:
    status = taus.status.fillna("").astype(str)
    has = (status == "") & taus.tau.notna()
    return {"has": has, "small": status.str.startswith("too small"), "undefined": status.str.startswith("undefined"),
            "other": ~has & ~status.str.startswith("too small") & ~status.str.startswith("undefined")}


def _tau_list(rows: pd.DataFrame, limit: int = 4) -> str:
    if len(rows) <= limit:
        return "; ".join(f"{r.task}/{r.policy} {r.tau:+.2f}{_ci(r, sign='+')}" for r in rows.itertuples())
    return f"{rows.tau.min():+.2f} to {rows.tau.max():+.2f} (median {rows.tau.median():+.2f})"


def policy_conclusion(taus: pd.DataFrame, deployed: pd.DataFrame, corpus: str,
                      deploy_definition: str = DEPLOY_DEFINITION) -> str:
    """Notebook 04's conclusion from its main tau table (``tau_rm_policy``: seen users, raw scores, deployed w) and
    the deployed settings (``deployed``: one row per reward model and policy, its ``w``): how many cells have a
    tau, what the taus are against the paper's range, and how many reward models are deployed at ``w = 0`` (the base
    policy: their policy accuracy is the base policy's, whatever their RM accuracy)."""
    c = _tau_cells(taus)
    rm = taus[(taus.level == "rm") & c["has"]]
    dep = rm[rm.definition == deploy_definition]
    lo, hi = PAPER["tau"]["lo"], PAPER["tau"]["hi"]
    shows = (f"**What this run shows.** {int(c['has'].sum())} of {len(taus)} tau cells (datasets x policies x "
             f"definitions x levels) have a number; {int(c['small'].sum())} are below the minimum sizes "
             f"({MIN_SIZES['models']} models, {MIN_SIZES['pairs']} test pairs, {MIN_SIZES['users']} users) and "
             f"{int(c['undefined'].sum())} undefined (a constant side)"
             + (f", {int(c['other'].sum())} refused for another reason (`status`)" if c["other"].any() else "") + ". ")
    if len(dep):
        inside = int(dep.tau.between(lo, hi).sum())
        zero_in = int(((dep.ci_lo <= 0) & (dep.ci_hi >= 0)).sum())
        shows += (f"Across reward models, at the deployed w ({deploy_definition}): {_tau_list(dep)}; {inside} of "
                  f"{len(dep)} inside the paper's {lo}-{hi}, and the 95% CI includes 0 in {zero_in} of {len(dep)}. ")
    elif len(rm):
        shows += f"No {deploy_definition} cell has a tau; other definitions: {_tau_list(rm)}. "
    else:
        shows += "No reward-model-level cell has a tau, so this run says nothing about the paper's 0.08-0.31. "
    at0 = deployed.assign(zero=deployed.w.astype(float) == 0).groupby(["task", "policy"]).zero.agg(["sum", "size"])
    n0, n = int(at0["sum"].sum()), int(at0["size"].sum())
    mostly = [f"{t}/{p} ({int(r['sum'])} of {int(r['size'])})" for (t, p), r in at0.iterrows() if r["sum"] > r["size"] / 2]
    shows += (f"The deployed w is 0 for {n0} of {n} reward models"
              + (f", most of them on {', '.join(mostly)}" if mostly else "")
              + ": such a reward model is deployed as the base policy, so its policy accuracy is the base policy's "
                "whatever its RM accuracy, and a tau over mostly such models says little about steering.")
    largest = int(taus.n_pairs.max()) if len(taus) else 0
    cannot = (f"**What it cannot show.** The largest test half has {largest} pairs (the minimum for a tau is "
              f"{MIN_SIZES['pairs']}): " + ("most cells here are too small to test the paper's range, and a CI over "
                                             "so few pairs is wide. " if c["small"].sum() > len(taus) / 2 else
                                             "the CIs, not the point estimates, are what to compare with the paper. ")
              + "Policy accuracy is measured on preference pairs; whether a reward model's steering improves what the "
                "user reads is notebook 05's question. " + corpus_note(corpus))
    return shows + "\n\n" + cannot


# --- notebook 05 --------------------------------------------------------------------------------------------
def _largest(best: pd.DataFrame) -> tuple[str, float]:
    """The largest policy of a ``generation_best`` table (``model``, ``params_m``) and its size in millions."""
    sizes = best.groupby("model").params_m.first().astype(float).sort_index()
    return sizes.idxmax(), float(sizes.max())


def generation_conclusion(gap: pd.DataFrame, rgd_selected: pd.DataFrame | None, best: pd.DataFrame,
                          corpus: str) -> str:
    """Notebook 05's conclusion from ICL minus the best RGD (``icl_vs_best_rgd_ci``: per task and policy, paired CI),
    each decoded reward model at its deployed w (``rgd_selected``, :func:`lib.report.results.select_rgd_w`) and the
    base / best ICL / best RGD table (``best``, with the policies' sizes ``params_m``)."""
    if gap.empty:
        return "**What this run shows.** No (task, policy) cell has both an ICL and an RGD result. " + corpus_note(corpus)
    ahead, above = int((gap.icl_minus_rgd_points > 0).sum()), int((gap.ci_lo > 0).sum())
    below = int((gap.ci_hi < 0).sum())
    base_won = int((gap.rgd_rm.isna() | (gap.rgd_w.astype(float) == 0)).sum())
    name, size = _largest(best)
    at = gap[gap.model == name]
    shows = (f"**What this run shows.** ICL is ahead of the best RGD in {ahead} of {len(gap)} (task, policy) cells, "
             f"with a 95% CI above 0 in {above} (below 0 in {below}). At the largest policy here ({name}, "
             f"{size:.0f}M): " + "; ".join(f"{r.task} {r.icl_minus_rgd_points:+.1f}{_ci(r, '.1f', '+')}"
                                           for r in at.itertuples()) + " ROUGE-1 points. ")
    icl_base = int((gap.icl_k.astype(float) == 0).sum())
    shows += (f"The best RGD chosen on the validation queries is the base policy itself in {base_won} of {len(gap)} "
              f"cells (no reward model improved on not steering there), and the best ICL in {icl_base} (no number of "
              "examples improved on none). ")
    if rgd_selected is not None and len(rgd_selected):
        z = int((rgd_selected.w_selected.astype(float) == 0).sum())
        shows += (f"{z} of {len(rgd_selected)} decoded reward models run at w = 0 (their generations are the base "
                  "policy's).")
    minb, width = PAPER["icl"]["min_params_m"], float((gap.ci_hi - gap.ci_lo).median())
    cannot = ("**What it cannot show.** "
              + (f"The paper's ICL result is for policies of {minb / 1000:.0f}B parameters and more; the largest here has "
                 f"{size:.0f}M, so this run neither confirms nor contradicts it. " if size < minb else "")
              + f"A cell has {int(gap.n_queries.median())} test queries (median): its CI spans {width:.0f} ROUGE-1 "
                "points (median)" + (f", wider than the paper's whole {PAPER['icl']['points']:+.0f}"
                                     if width > PAPER["icl"]["points"] else "")
              + ". ROUGE measures word overlap with the user's own output, not whether "
                "the style was personalised (see the rule-following table). " + corpus_note(corpus))
    return shows + "\n\n" + cannot


# --- the paper beside this run (notebook 06, summary.md, README) -----------------------------------------------
def _tau_row(taus: pd.DataFrame, deploy_definition: str) -> tuple[str, str]:
    cells = taus[(taus.level == "rm") & (taus.definition == deploy_definition)]
    c = _tau_cells(cells)
    dep = cells[c["has"]]
    if dep.empty:
        run = "no cell has a tau"
    else:
        run = _tau_list(dep) + f" ({deploy_definition}, deployed w, seen users)"
    status = (f"{len(dep)} of {len(cells)} cells have a tau ({int(c['small'].sum())} too small, "
              f"{int(c['undefined'].sum())} undefined)")
    if len(dep):
        status += f"; CI includes 0 in {int(((dep.ci_lo <= 0) & (dep.ci_hi >= 0)).sum())} of {len(dep)}"
    return run, status


def _decoupling_row(rr: pd.DataFrame, rm_acc_col: str) -> tuple[str, str]:
    cells = rr.dropna(subset=[rm_acc_col, "rouge1"]).groupby(["task", "model"]).agg(
        acc=(rm_acc_col, lambda s: 100 * (s.max() - s.min())), rouge=("rouge1", lambda s: 100 * (s.max() - s.min())),
        n=("rm", "size"))
    if cells.empty:
        return "no decoded reward model with an RM accuracy", "not measured"
    (task, model), top = cells.acc.idxmax(), cells.loc[cells.acc.idxmax()]
    big = int((cells.acc >= PAPER["decoupling"]["gap_points"]).sum())
    run = (f"largest RM-accuracy gap between the decoded reward models of one cell: {top.acc:.0f} points ({task}/{model},"
           f" {int(top.n)} models); their test ROUGE-1 spans {top.rouge:.1f} points")
    status = f"{big} of {len(cells)} cells have a gap of {PAPER['decoupling']['gap_points']} points or more"
    if "w_selected" in rr:
        z = int((rr.w_selected.astype(float) == 0).sum())
        status += f"; {z} of {len(rr)} decoded reward models run at w = 0 (the base policy's ROUGE by construction)"
    return run, status


def _icl_row(gap: pd.DataFrame, best: pd.DataFrame) -> tuple[str, str]:
    name, size = _largest(best)
    at = gap[gap.model == name]
    if at.empty:
        return f"no ICL vs RGD cell for {name}", "not measured"
    run = f"{name} ({size:.0f}M): " + "; ".join(f"{r.task} {r.icl_minus_rgd_points:+.1f}{_ci(r, '.1f', '+')}"
                                                 for r in at.itertuples())
    status = f"CI above 0 in {int((gap.ci_lo > 0).sum())} of {len(gap)} cells (every policy)"
    if size < PAPER["icl"]["min_params_m"]:
        status = f"not comparable: largest policy {size:.0f}M < {PAPER['icl']['min_params_m'] / 1000:.0f}B; " + status
    return run, status


def paper_vs_run(taus: pd.DataFrame, *, rm_vs_rouge: pd.DataFrame | None = None, icl_gap: pd.DataFrame | None = None,
                 best: pd.DataFrame | None = None, corpus: str = "?", profile: str = "?", rm_acc_col: str = "rm_acc_seen",
                 deploy_definition: str = DEPLOY_DEFINITION) -> tuple[pd.DataFrame, str]:
    """The paper's three headline claims (:data:`PAPER`, cited as the paper's) beside this run's corresponding numbers
    with their CIs and a ``status`` (how many cells measured it, whether it is comparable): ``(table, markdown)``.

    ``taus``: notebook 04's ``tau_rm_policy``; ``rm_vs_rouge``: each decoded reward model's RM accuracy and test
    ROUGE-1 (:func:`lib.report.results.rgd_tables`); ``icl_gap``: ``icl_vs_best_rgd_ci``; ``best``: base / best ICL /
    best RGD with the policies' sizes (``params_m``). A profile without generations (None) says so in its rows.
    """
    none = ("not measured: no reward-guided generations in this run", "not run")
    rows = [(PAPER["tau"], *_tau_row(taus, deploy_definition)),
            (PAPER["decoupling"], *(_decoupling_row(rm_vs_rouge, rm_acc_col) if rm_vs_rouge is not None else none)),
            (PAPER["icl"], *(_icl_row(icl_gap, best) if icl_gap is not None and len(icl_gap) and best is not None
                             else ("not measured: no ICL vs RGD comparison in this run", "not run")))]
    table = pd.DataFrame([{"claim": p["claim"], "paper": p["paper"], "this_run": run, "status": status}
                          for p, run, status in rows])
    md = (f"The paper's numbers (arXiv 2512.23067, abstract; v1 where noted) are cited, not reproduced; beside them "
          f"this run's (profile `{profile}`), with 95% CIs. {corpus_note(corpus)}\n\n" + to_markdown(table))
    return table, md
