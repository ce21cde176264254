"""Tables of notebook 05's generations (and of how upstream metrics predict them), computed once for
notebooks 05 and 06.

:func:`generation_tables` turns the scored generations (``generations.csv``, :func:`lib.core.schema.read_results`) into the
mean ROUGE per system setting (:func:`summarize`), the best ICL ``k`` and RGD (reward model, ``w``) chosen on
the val queries and reported on the test queries (:func:`best_systems`), ICL's margin over the best RGD
(:func:`icl_gap`) and the rule-following rates. :func:`rgd_tables` asks whether RM accuracy predicts RGD
ROUGE-1 across reward models, :func:`selection_table` which upstream number does.
"""
from __future__ import annotations

import pandas as pd

from ..core import models
from ..evaluation import metrics, tau_stats

BEST_COLUMNS = ["task", "model", "params_m", "system", "rm", "param", "n_candidates", "val_rouge1", "n", "rouge1",
                "rouge1_lo", "rouge1_hi", "rougeL", "follows_rule"]


# --- summaries of generations ----------------------------------------------------------------------
def summarize(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean ROUGE-1/L (bootstrap CI of ROUGE-1) and rule-following rate per system setting (and per
    ``half`` when the results have one, see :func:`lib.evaluation.generation.query_halves`)."""
    rows = []
    cols = ["task", "model", "system", "rm", "param"] + (["half"] if "half" in df else [])
    for key, g in df.groupby(cols, dropna=False, sort=True):
        lo, hi = metrics.bootstrap_ci(g["rouge1"], n_boot=n_boot, seed=seed)
        fr = g["follows_rule"].dropna()
        rows.append({**dict(zip(cols, key)), "n": len(g), "rouge1": g["rouge1"].mean(), "rouge1_lo": lo,
                     "rouge1_hi": hi, "rougeL": g["rougeL"].mean(),
                     "follows_rule": fr.astype(float).mean() if len(fr) else float("nan")})
    return pd.DataFrame(rows)


def _pick(val: pd.DataFrame, test: pd.DataFrame, keys=("rm", "param")) -> pd.Series | None:
    """The test row of the setting with the best val ROUGE-1 (ties: the smaller param, then the name)."""
    if val.empty:
        return None
    v = val.assign(_p=val["param"].astype(float).fillna(-1.0), _rm=val["rm"].fillna(""))
    best = v.sort_values(["rouge1", "_p", "_rm"], ascending=[False, True, True], kind="stable").iloc[0]
    t = test
    for k in keys:
        t = t[(t[k] == best[k]) | (t[k].isna() & pd.isna(best[k]))]
    if t.empty:
        return None
    row = t.iloc[0].copy()
    row["val_rouge1"] = best["rouge1"]
    return row


def best_systems(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model): base, the best ICL k and the best RGD reward model (each at its one setting).

    The base policy is a candidate of both ICL (``k = 0``) and RGD (``w = 0``: not steering is always an
    option, as in :func:`select_rgd_w`), so neither is reported at a setting validation rejected.
    ``n_candidates`` counts the settings each system chose among (its selection budget). With a ``half``
    column (:func:`lib.evaluation.generation.query_halves`) the best setting is chosen on the *val* queries
    and reported on the *test* queries (``val_rouge1`` keeps the selection score); without one it is picked on
    the evaluation queries themselves (an oracle choice, optimistic for ICL and RGD alike).
    """
    rows = []
    halves = "half" in summary
    for (_task, _model), g in summary.groupby(["task", "model"], sort=True):
        base = g[g.system == "base"]
        for system in ("base", "icl", "rgd"):
            s = g[g.system == system]
            if not len(s):
                continue
            if system == "rgd":  # one row per (rm, param) setting; RGD at w = 0 is the base: one candidate
                s = s[s.param.astype(float) != 0.0]
            if system != "base":
                s = pd.concat([base.assign(system=system, param=0.0), s])
            n_cand = len(s.drop_duplicates(["rm", "param"]))
            if halves:
                r = _pick(s[s.half == "val"], s[s.half == "test"])
            else:
                r = s.sort_values(["rouge1", "param"], ascending=[False, True], kind="stable").iloc[0].copy()
            if r is not None:
                r["n_candidates"] = n_cand
                rows.append(r)
    out = pd.DataFrame(rows).reset_index(drop=True)
    if len(out):
        out["params_m"] = [params_m(m) for m in out.model]
    return out


def params_m(model: str) -> float:
    """A policy's parameter count (millions) for the size plots: :func:`lib.core.models.spec`'s, so a name mapped to
    a folder (``$PRC_MODELS``, a profile's ``common.models``) counts the parameters of the model it runs, not the
    registry's; NaN, with a warning, for a name no model answers to (its point is then left out of the size plot).
    A whole number stays an int, so the tables print 270, not 270.000."""
    try:
        v = float(models.spec(model).params_m)
        return int(v) if v.is_integer() else v
    except models.ModelUnavailableError as e:
        import warnings

        warnings.warn(f"no parameter count for policy {model!r} ({e}); it has no point on the size plot", stacklevel=2)
        return float("nan")


def select_rgd_w(summary: pd.DataFrame) -> pd.DataFrame:
    """Each reward model's RGD ROUGE on the test queries at its setting.

    Decoded at its one deployed setting (notebook 05's default ``rgd_ws="deployed"``: one ``param`` per reward
    model, chosen by notebook 04 on validation *pairs*), that setting is reported as it is: no second selection.
    Decoded over a sweep of w (a list ``rgd_ws``), its w is chosen on the val queries among the sweep and
    ``w = 0``, the base policy. One row per (task, model, rm): ``w_selected``, ``val_rouge1``, and the test
    ``rouge1``, ``rouge1_lo/hi``, ``rougeL``, ``follows_rule``, ``n``.
    """
    if "half" not in summary:
        raise ValueError("select_rgd_w needs results with a 'half' column (see lib.evaluation.generation.query_halves)")
    rows = []
    for (_task, _model), g in summary.groupby(["task", "model"], sort=True):
        base = g[g.system == "base"]
        for rm, s in g[g.system == "rgd"].groupby("rm", sort=True):
            cand = s if s.param.nunique() == 1 else pd.concat([base.assign(rm=rm, param=0.0), s[s.param != 0]])
            r = _pick(cand[cand.half == "val"], cand[cand.half == "test"])
            if r is not None:
                rows.append(r.rename({"param": "w_selected"}))
    out = pd.DataFrame(rows).reset_index(drop=True)
    if len(out):
        out["w_selected"] = out["w_selected"].astype(float)
        out["system"] = "rgd"
    return out


def icl_gap_ci(gen: pd.DataFrame, best: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """ICL minus the best RGD in ROUGE-1 points per (task, model), with a paired bootstrap CI over the *test*
    queries (both systems at their val-chosen settings, :func:`best_systems`, on the same queries; users, then
    queries within a user, resampled: :func:`lib.evaluation.tau_stats.paired_gap_ci`)."""
    test = gen[gen.half == "test"] if "half" in gen else gen
    rows = []
    for (task, model), b in best.groupby(["task", "model"], sort=True):
        picks = {r.system: r for r in b.itertuples()}
        if "icl" not in picks or "rgd" not in picks:
            continue
        t = test[(test.task == task) & (test.model == model)]
        side = {}
        for sysname in ("icl", "rgd"):
            r = picks[sysname]
            if float(r.param) == 0.0:  # the base policy won the selection
                q = t[t.system == "base"]
            else:
                q = t[(t.system == sysname) & (t.param.astype(float) == float(r.param))]
                q = q[q.rm == r.rm] if sysname == "rgd" else q
            side[sysname] = q.set_index("query_id")
        ids = sorted(set(side["icl"].index) & set(side["rgd"].index))
        res = tau_stats.paired_gap_ci(side["icl"].loc[ids, "rouge1"].to_numpy(), side["rgd"].loc[ids, "rouge1"].to_numpy(),
                                    groups=side["icl"].loc[ids, "user"].astype(str).to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({"task": task, "model": model, "icl_k": picks["icl"].param, "rgd_rm": picks["rgd"].rm,
                     "rgd_w": picks["rgd"].param, "n_queries": res["n"], "n_users": res["n_groups"],
                     "icl_minus_rgd_points": 100 * res["gap"], "ci_lo": 100 * res["ci_lo"], "ci_hi": 100 * res["ci_hi"]})
    return pd.DataFrame(rows)


def rm_vs_rouge(summary: pd.DataFrame, rm_table: pd.DataFrame, rm_col: str = "rm") -> pd.DataFrame:
    """RGD ROUGE-1 of each reward model joined with its RM accuracy (``rm_table``): at its val-selected w
    (:func:`select_rgd_w`) when the results have halves, else at its best w on the same queries.

    ``rm_table`` needs the column ``rm_col`` naming the models as in the ``rm`` column of the results.
    Feed the result to :func:`lib.evaluation.metrics.tau_table` (x = RM accuracy, y = rouge1): the decoupling.
    """
    if "half" in summary:
        best = select_rgd_w(summary)
    else:
        r = summary[summary.system == "rgd"]
        best = (r.sort_values(["rouge1", "param"], ascending=[False, True], kind="stable")
                .groupby(["task", "model", "rm"], sort=True).head(1))
    missing = set(best.rm) - set(rm_table[rm_col])
    if missing:
        raise KeyError(f"rm_vs_rouge: reward models {sorted(missing)[:5]} have no row in the RM table")
    return best.merge(rm_table, left_on=["task", "rm"] if "task" in rm_table else ["rm"],
                      right_on=["task", rm_col] if "task" in rm_table else [rm_col], how="left")


def small_n_taus(taus: pd.DataFrame, x: str, y: str, df: pd.DataFrame, by) -> pd.DataFrame:
    """The rules of notebook 04's tau cells on a :func:`lib.evaluation.metrics.tau_table`: a cell with fewer reward
    models than ``tau_stats.MIN_SIZES["models"]`` has no tau (``status`` says so); with at most
    ``tau_stats.MAX_EXACT_N`` models a percentile bootstrap CI is meaningless, so it is dropped for the exact
    permutation p-value (``p_exact``)."""
    out = taus.copy()
    out["p_exact"], out["status"] = float("nan"), ""
    for i, r in out.iterrows():
        g = df
        for c in by:
            g = g[g[c] == r[c]]
        g = g.dropna(subset=[x, y])
        if r.n < tau_stats.MIN_SIZES["models"]:
            out.loc[i, ["tau", "ci_lo", "ci_hi", "p"]] = float("nan")
            out.loc[i, "status"] = f"too small: {r.n} models < {tau_stats.MIN_SIZES['models']}"
        elif r.n <= tau_stats.MAX_EXACT_N:
            out.loc[i, ["ci_lo", "ci_hi"]] = float("nan")
            out.loc[i, "p_exact"] = tau_stats.exact_permutation_p(g[x], g[y])
            if pd.isna(r.tau):
                out.loc[i, "status"] = "undefined: a side is constant"
        elif pd.isna(r.tau):
            out.loc[i, "status"] = "undefined: a side is constant"
    return out


# --- which selection metric predicts behaviour? -------------------------------------------------------
UPSTREAM = {"rm_acc": "RM accuracy", "policy_acc_cumulative": "policy accuracy (cumulative)",
            "policy_acc_rgd_likelihood": "policy accuracy (rgd_likelihood)",
            "policy_acc_rgd_likelihood_smoothed": "policy accuracy (rgd_likelihood_smoothed)",
            "reward_margin": "calibrated reward margin"}


def upstream_metrics(rm_pairs: pd.DataFrame, policy_at_selected: pd.DataFrame, user_group: str = "seen") -> pd.DataFrame:
    """Per (task, policy, rm): every candidate selection metric on the test half of notebook 04's pairs:
    RM accuracy, policy accuracy of each definition at the deployed w (raw scores), and the mean
    calibrated reward margin r(chosen) - r(rejected)."""
    r = rm_pairs[(rm_pairs.half == "test") & (rm_pairs.user_group == user_group)]
    out = r.groupby(["task", "policy", "rm"], sort=True).agg(rm_acc=("rm_correct", "mean"),
                                                             reward_margin=("reward_margin", "mean"))
    p = policy_at_selected[(policy_at_selected.half == "test") & (policy_at_selected.user_group == user_group)
                           & (~policy_at_selected.normalise.astype(bool))]
    pa = p.groupby(["task", "policy", "rm", "definition"], sort=True).correct.mean().unstack("definition")
    pa.columns = [f"policy_acc_{c}" for c in pa.columns]
    return out.join(pa, how="left").reset_index()


def selection_table(upstream: pd.DataFrame, rgd_selected: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Kendall tau-b of each upstream selection metric with the downstream RGD ROUGE-1 (test queries, each
    reward model at its val-selected w, :func:`select_rgd_w`) across the reward models of a task and policy,
    with a bootstrap CI over reward models. The paper's question asked directly: which number, measured
    before deployment, ranks reward models the way their generations rank?"""
    df = upstream.merge(rgd_selected[["task", "model", "rm", "rouge1"]].rename(columns={"model": "policy"}),
                        on=["task", "policy", "rm"], how="inner")
    rows = []
    for col, label in UPSTREAM.items():
        if col in df:
            t = metrics.tau_table(df, col, "rouge1", by=["task", "policy"], n_boot=n_boot, seed=seed)
            rows.append(small_n_taus(t, col, "rouge1", df, ["task", "policy"]).assign(metric=label))
    if not rows:
        raise ValueError("selection_table: no upstream metric column in the input")
    out = pd.concat(rows, ignore_index=True)
    return out[["task", "policy", "metric", "n", "tau", "ci_lo", "ci_hi", "p_exact", "status"]]


# --- the tables of notebooks 05 and 06 ---------------------------------------------------------------
def icl_gap(best: pd.DataFrame, by=("task", "model", "params_m"), name: str = "icl_minus_best_rgd_points") -> pd.DataFrame:
    """ROUGE-1 of each system of :func:`best_systems` per ``by`` (one column per system) and ``name``: ICL
    minus the best RGD in ROUGE-1 points (NaN without RGD rows)."""
    gap = best.pivot_table(index=list(by), columns="system", values="rouge1")
    gap[name] = 100 * (gap["icl"] - gap["rgd"]) if "rgd" in gap else float("nan")
    return gap


def rule_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Rule-following rate per (model, setting) and task (synthetic users only; empty without a rule)."""
    from .plots import setting_label

    rule = summary.dropna(subset=["follows_rule"]).copy()
    if not len(rule):
        return pd.DataFrame()
    rule["setting"] = [setting_label(r) for _, r in rule.iterrows()]
    return rule.pivot_table(index=["model", "setting"], columns="task", values="follows_rule").reset_index()


def user_view(results: pd.DataFrame, user=None) -> pd.DataFrame:
    """One user's generations side by side (default: the first user of ``results``)."""
    from .plots import setting_label

    u = results.user.iloc[0] if user is None else user
    show = results[results.user == u].copy()
    show["setting"] = [setting_label(r) for _, r in show.iterrows()]
    return show[["query_id", "setting", "generation", "reference", "rouge1", "follows_rule"]]


def generation_tables(gen: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of the generations ``gen`` (with halves, :func:`lib.evaluation.generation.finish_generations`):

    * ``summary``: per setting and half (:func:`summarize`); ``generation_all_settings``: per setting over
      all queries (the sweeps);
    * ``best``: base, best ICL, best RGD per task and model (:func:`best_systems`), ``generation_best`` its
      reported columns; ``icl_vs_best_rgd``: :func:`icl_gap`;
    * ``rule_following``: :func:`rule_table` over all queries (empty without synthetic rules).
    """
    summary = summarize(gen, n_boot=n_boot, seed=seed)
    sweep = summarize(gen.drop(columns="half"), n_boot=n_boot, seed=seed)
    best = best_systems(summary)
    return {"summary": summary, "generation_all_settings": sweep, "best": best, "generation_best": best[BEST_COLUMNS],
            "icl_vs_best_rgd": icl_gap(best).reset_index(),
            "icl_vs_best_rgd_ci": icl_gap_ci(gen, best, n_boot=n_boot, seed=seed), "rule_following": rule_table(sweep)}


def rgd_tables(summary: pd.DataFrame, rm_index: pd.DataFrame, rm_acc_col: str = "rm_acc_seen", n_boot: int = 1000,
               seed: int = 0) -> dict[str, pd.DataFrame]:
    """The decoupling, from :func:`summarize` with halves and notebook 02's RM index: ``rgd_selected`` (each
    reward model at its val-selected w, :func:`select_rgd_w`; ``rgd_selected_w`` its reported columns),
    ``rm_vs_rouge`` (joined with its RM accuracy, :func:`rm_vs_rouge`) and ``tau_rm_rouge_all``: Kendall tau-b
    of ``rm_acc_col`` with the test ROUGE-1 across the reward models of each task and model
    (``tau_rm_rouge``: its reported columns). Empty dict without RGD rows."""
    if not (summary.system == "rgd").any():
        return {}
    rr = rm_vs_rouge(summary, rm_index[["task", "rm", "method", "rm_acc_seen", "rm_acc_unseen"]])
    tau = small_n_taus(metrics.tau_table(rr, rm_acc_col, "rouge1", by=["task", "model"], n_boot=n_boot, seed=seed),
                       rm_acc_col, "rouge1", rr, ["task", "model"])
    sel = select_rgd_w(summary)
    return {"rgd_selected": sel, "rgd_selected_w": sel[["task", "model", "rm", "w_selected", "val_rouge1", "n",
                                                          "rouge1", "rouge1_lo", "rouge1_hi"]],
            "rm_vs_rouge": rr, "tau_rm_rouge_all": tau,
            "tau_rm_rouge": tau[["task", "model", "n", "tau", "ci_lo", "ci_hi", "p_exact", "status"]]}
