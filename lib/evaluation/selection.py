"""Policy accuracy of every reward model, its one deployed setting, and the statistics across reward models.

Notebook 04 as functions. :func:`score_selection` teacher-forces the test pairs of every dataset once per
(policy, reward backbone) and scores each reward model on them (:func:`score_pairs`): the RM outcome of each
pair, and per definition, normalisation and ``w`` the policy outcome and the measured steering strength (the
mean per-token KL of the RGD next-token distribution from the base policy's, :func:`lib.evaluation.policy_accuracy.steering_kl`).
The pairs are split into a *val* half and a *test* half (:func:`split_halves`).

**One deployed setting per reward model** (:func:`deployed_settings`): on the val half, each reward model's ``w``
is chosen once, by one criterion (policy accuracy under ``deploy_definition``, raw scores, seen and unseen users
pooled; ``w = 0``, the base policy, is always a candidate and wins ties), and every downstream number uses it:
policy accuracy here, the generations of notebook 05 (which decodes each reward model at that ``w``, read from
``eval/deployed_settings.csv``) and the selection metrics of notebook 06. Each method also deploys one reward
model (``method_pick``: of its seeds and prefix variants, the best on the same val pairs), the RGD candidates
of notebook 05.

**Equal steering strength**: with ``step_calibration`` each reward model's ``w`` is divided by the within-step
spread of its candidate rewards on the val pairs (:func:`lib.evaluation.policy_accuracy.step_scale`), so one
``w`` means about the same KL for every method; :func:`matched_kl` compares reward models at a fixed KL instead
of a fixed ``w``.

:func:`policy_tables` turns the per-pair outcomes into every table of notebooks 04 and 06; its Kendall tau-b
cells resample hierarchically (methods, then variants; users, then pairs: :func:`lib.evaluation.tau_stats.kendall_tau_hier_ci`)
and a cell below the documented minimum sizes is "too small", never a number.
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd

from ..core import models
from . import tau_stats
from .deployment import (  # noqa: F401 (re-exported)
    DEPLOY_DEFINITION,
    at_deployed,
    deployed_definition,
    deployed_settings,
    kl_curves,
    matched_kl,
)
from .policy_accuracy import (
    out_of_support,
    outcome,
    score_margin,
    sequence_scores,
    steering_kl,
    step_scale,
    teacher_forced_sets,
)

META_COLUMNS = ["task", "rm", "method", "backbone", "seed", "prefix_train", "degenerate"]
DEFAULT_DEFINITIONS = ("cumulative", "rgd_likelihood")


# ----------------------------------------------------------------------------- pairs and halves
def load_dataset_pairs(P, name: str) -> list[dict]:
    """Preference pairs of one dataset of notebook 02: a Pref-LaMP task (notebook 01) or a multi-user
    preference set (TL;DR / PRISM / PersonalLLM), which notebook 02 stores under ``P.prefsets/<name>``."""
    from ..core.io import read_jsonl
    from ..data.preflamp import load_pairs

    if (P.preflamp / name / "pairs.jsonl").exists():
        return load_pairs(P.preflamp, name)
    f = P.prefsets / name / "pairs.jsonl"
    if f.exists():
        return read_jsonl(f)
    raise FileNotFoundError(f"no pairs of dataset {name!r}: neither {P.preflamp / name / 'pairs.jsonl'} (notebook 01) "
                            f"nor {f} (notebook 02, pref_datasets)")


def test_pairs(pairs: list[dict], max_per_group: int | None = None) -> list[dict]:
    """The test pairs of seen and unseen users, sorted by id, at most ``max_per_group`` of each group."""
    out = []
    for g in ("seen", "unseen"):
        ps = sorted((p for p in pairs if p["split"] == "test" and p["user_group"] == g), key=lambda p: p["pair_id"])
        out += ps[:max_per_group] if max_per_group else ps
    return out



def split_halves(pair_ids, seed: int = 0, val_frac: float = 0.5) -> dict[str, str]:
    """Assign each pair to "val" (selects w) or "test" (reports), a fixed fraction by a seeded hash order.

    A pure function of the ids and the seed: every notebook, policy and reward model sees the same halves.
    """
    ids = sorted(set(pair_ids), key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    n_val = int(len(ids) * val_frac)
    return {p: ("val" if i < n_val else "test") for i, p in enumerate(ids)}


def index_overview(rm_index: pd.DataFrame) -> pd.DataFrame:
    """Reward models per dataset and backbone in notebook 02's index, and how many are flagged degenerate."""
    return rm_index.assign(flagged=rm_index.degenerate != "").groupby(["task", "backbone"]).agg(
        models=("rm", "size"), flagged_degenerate=("flagged", "sum")).unstack("backbone")


# ----------------------------------------------------------------------------- scoring
def score_pairs(policy, tok, rms: dict, pairs: list[dict], ws, definitions=DEFAULT_DEFINITIONS, k: int = 10,
                policy_name: str | None = None, featurizer=None, batch_size: int = 16, progress: bool = False,
                scale_ids=None, step_calibration: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Teacher-force every pair once for all reward models ``rms`` (one backbone) and score them.

    Returns two long tables, one row per (reward model, pair) and per (reward model, pair, definition,
    normalise, w):

    * ``rm``: ``rm_correct`` (RM accuracy outcome: the reward of the chosen full response, the state of
      its end token, above the rejected one's), ``reward_margin`` (that difference, in the model's decoding
      units), ``step_scale`` (the reward model's within-step spread of candidate rewards on the pairs of
      ``scale_ids``, default all; 1.0 without ``step_calibration``) and ``oos_chosen`` / ``oos_rejected``
      (the response has a token outside the policy's top-k: RGD can never emit it), ``rgd_path`` (the decoding path
      the rewards were computed on: ``shared``, ``separate`` or ``text``, paths a, b and c of lib/decoding/rgd.py);
    * ``policy``: ``correct``, the policy-accuracy outcome under each definition and nominal ``w`` (the reward
      weight is ``w / step_scale``), and ``kl``: the mean per-token KL of the RGD next-token distribution
      from the base policy's over the candidates (:func:`lib.evaluation.policy_accuracy.steering_kl`), averaged
      over the chosen and the rejected response.
    """
    if not pairs:
        return pd.DataFrame(), pd.DataFrame()
    tc, tr = teacher_forced_sets(policy, tok, rms, [p["prompt"] for p in pairs],
                                 [[p["chosen"] for p in pairs], [p["rejected"] for p in pairs]],
                                 [p["user"] for p in pairs], k=k, policy_name=policy_name, featurizer=featurizer,
                                 batch_size=batch_size, progress=progress)
    ids = [p["pair_id"] for p in pairs]
    on = [i for i, p in enumerate(ids) if scale_ids is None or p in scale_ids]
    rm_rows, pol = [], []
    ws = np.asarray(ws, dtype=float)
    for key in rms:
        scale = _scale(tc[key], tr[key], on, key) if step_calibration else 1.0
        margin = np.array([c.r_gold[-1] - r.r_gold[-1] for c, r in zip(tc[key], tr[key])])
        rm_rows.append(pd.DataFrame({"rm": key, "pair_id": ids, "rm_correct": outcome(margin), "reward_margin": margin,
                                     "step_scale": scale, "oos_chosen": out_of_support(tc[key]),
                                     "oos_rejected": out_of_support(tr[key]), "rgd_path": tc[key][0].path}))
        kl = (steering_kl(tc[key], ws, scale) + steering_kl(tr[key], ws, scale)) / 2  # [N, W]
        for d in definitions:
            for norm in (False, True):
                m = score_margin(sequence_scores(tc[key], ws / scale, d, norm),
                                 sequence_scores(tr[key], ws / scale, d, norm))  # [N, W]
                pol.append(pd.DataFrame({"rm": key, "pair_id": np.repeat(ids, len(ws)), "definition": d,
                                         "normalise": norm, "w": np.tile(ws, len(ids)),
                                         "correct": outcome(m).ravel(), "kl": kl.ravel()}))
    return pd.concat(rm_rows, ignore_index=True), pd.concat(pol, ignore_index=True)


def _scale(tc, tr, on: list[int], key: str) -> float:
    """Within-step spread of a reward model's candidate rewards on the pairs ``on``; 1.0 (with a warning) when
    its reward does not vary across candidates (nothing to calibrate: it cannot steer at any w)."""
    try:
        return step_scale([tc[i] for i in on] + [tr[i] for i in on])
    except ValueError as e:
        warnings.warn(f"reward model {key!r}: {e}; step calibration left at 1", stacklevel=3)
        return 1.0


def score_selection(P, policies, datasets, rm_index: pd.DataFrame, ws, definitions, *, seed: int = 0,
                    val_frac: float = 0.5, rgd_k: int = 10, calibrated: bool = True, step_calibration: bool = True,
                    rm_methods=None, rm_backbones="policy", rm_seeds=None, rm_prefix_train=None,
                    max_pairs_per_group=None, batch_size: int = 16,
                    load_model=models.load_causal_lm) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 04's per-pair outcomes: for every policy and dataset, the test pairs (:func:`test_pairs`)
    scored by every selected reward model (:func:`score_pairs`, one teacher-forced pass per backbone; the step
    calibration measured on the val half only), each row annotated with ``task``, ``policy``, ``user``,
    ``user_group`` and ``half`` (:func:`split_halves`).

    ``ws`` must hold 0 (the base policy: the reference of every accuracy and a candidate of every deployed
    setting). ``rm_index``: notebook 02's index (``rewards.read_rm_index``); the reward models of a dataset are
    selected by ``rewards.select_rms`` and loaded (adapted to unseen users) by ``rewards.load_task_rms``.
    ``load_model(policy) -> (model, tok)`` loads a policy (injectable for tests). Returns ``(rm_pairs,
    pol_pairs)``; ``rm_pairs`` carries the reward models' metadata (:data:`META_COLUMNS`).
    """
    from .. import rewards

    if not any(float(w) == 0.0 for w in ws):
        raise ValueError(f"ws {list(ws)} must contain 0: the base policy is the reference of every policy accuracy "
                         "and a candidate of every deployed setting")
    rm_pairs, pol_pairs = [], []
    for policy in policies:
        model, tok = load_model(policy)
        for ds in datasets:
            pairs = load_dataset_pairs(P, ds)
            test = test_pairs(pairs, max_pairs_per_group)
            sel = rewards.select_rms(rm_index, ds, rm_methods, rm_backbones, rm_seeds, rm_prefix_train, policy=policy)
            if sel.empty or not test:
                print(f"{policy} / {ds}: nothing to score ({len(sel)} reward models, {len(test)} test pairs)")
                continue
            rms = rewards.load_task_rms(sel, pairs, policy, model, tok, P.cache / "features", calibrated=calibrated)
            halves = split_halves([p["pair_id"] for p in test], seed, val_frac)
            groups = {p["pair_id"]: p["user_group"] for p in test}
            users = {p["pair_id"]: str(p["user"]) for p in test}
            val_ids = {p for p, h in halves.items() if h == "val"}
            print(f"{policy} / {ds}: {len(rms)} reward models x {len(test)} test pairs ({len(val_ids)} select w)")
            for _backbone, grp in sel.groupby("backbone", sort=True):
                group = {r: rms[r] for r in grp.rm}
                r_df, p_df = score_pairs(model, tok, group, test, ws, definitions, k=rgd_k, policy_name=policy,
                                         featurizer=next(iter(group.values()))._featurizer, batch_size=batch_size,
                                         scale_ids=val_ids, step_calibration=step_calibration)
                for df, out in ((r_df, rm_pairs), (p_df, pol_pairs)):
                    df.insert(0, "policy", policy)
                    df.insert(0, "task", ds)
                    df["user"] = df.pair_id.map(users)
                    df["user_group"] = df.pair_id.map(groups)
                    df["half"] = df.pair_id.map(halves)
                    out.append(df)
        del model
    if not rm_pairs:
        raise ValueError(f"score_selection: nothing was scored for policies {list(policies)} and datasets "
                         f"{list(datasets)} (no reward model or no test pair in any of them)")
    rm_pairs = pd.concat(rm_pairs, ignore_index=True).merge(rm_index[META_COLUMNS], on=["task", "rm"], how="left")
    return rm_pairs, pd.concat(pol_pairs, ignore_index=True)


# ----------------------------------------------------------------------------- accuracies
def accuracy_rows(rm_pairs: pd.DataFrame, policy_pairs: pd.DataFrame, by=("task", "policy", "user_group"),
                  base_pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Test-half accuracies: one row per (``by``, rm, definition, normalise, w) with ``policy_acc``,
    ``ties``, ``n_pairs``, ``kl`` (mean steering KL), the RM accuracy ``rm_acc`` and mean ``reward_margin`` of that
    reward model on the same pairs, ``oos_chosen`` / ``oos_rejected`` (share of responses with a token outside
    the policy's top-k), and ``base_acc``: the base policy's own accuracy (``w = 0``) under the *same* definition
    and normalisation, the reference of every policy-accuracy number (the same for every reward model), read
    from ``base_pairs`` (default ``policy_pairs``; pass the full table when ``policy_pairs`` holds only the
    deployed w of each model)."""
    by = list(by)
    pt = policy_pairs[policy_pairs.half == "test"]
    rt = rm_pairs[rm_pairs.half == "test"]
    bt = pt if base_pairs is None else base_pairs[base_pairs.half == "test"]
    g = pt.assign(_tie=(pt.correct == 0.5).astype(float)).groupby(by + ["rm", "definition", "normalise", "w"],
                                                                   sort=True)
    out = pd.concat([g.correct.mean().rename("policy_acc"), g._tie.mean().rename("ties"),
                     g.size().rename("n_pairs"), g.kl.mean().rename("kl")], axis=1).reset_index()
    agg = {"rm_acc": ("rm_correct", "mean"), "reward_margin": ("reward_margin", "mean")}
    agg.update({c: (c, "mean") for c in ("oos_chosen", "oos_rejected") if c in rt})
    r = rt.groupby(by + ["rm"], sort=True).agg(**agg)
    out = out.merge(r.reset_index(), on=by + ["rm"], how="left")
    base = bt[bt.w == 0]
    if len(base):  # identical for every reward model (w = 0): take one per pair
        b = (base.groupby(by + ["definition", "normalise", "pair_id"], sort=True).correct.first()
             .groupby(by + ["definition", "normalise"]).mean().rename("base_acc"))
        out = out.merge(b.reset_index(), on=by + ["definition", "normalise"], how="left")
    else:
        out["base_acc"] = np.nan
    return out


# ----------------------------------------------------------------------------- Kendall tau across reward models
def tau_table_pairs(rm_pairs: pd.DataFrame, policy_pairs: pd.DataFrame, by=("task", "policy", "user_group"),
                    level: str = "rm", n_boot: int = 1000, seed: int = 0, minimums=None) -> pd.DataFrame:
    """Kendall tau-b between RM accuracy and policy accuracy across reward models (``level="rm"``) or across
    methods (``level="method"``: a method's per-pair outcomes averaged over its seeds and prefix variants), on
    the test half.

    ``level="rm"``: a hierarchical bootstrap (:func:`lib.evaluation.tau_stats.kendall_tau_hier_ci`): methods,
    then reward models within a method; users, then pairs within a user (a user's pairs, a method's variants,
    are correlated). ``level="method"``: with a handful of methods a percentile bootstrap is meaningless, so
    no CI; the exact permutation p-value (``p_exact``) instead. A cell below the minimum sizes
    (:data:`lib.evaluation.tau_stats.MIN_SIZES`: models, test pairs, users) has no tau and says so in ``status``.
    ``policy_pairs`` holds one w per reward model (:func:`at_deployed`, or one fixed w) with the columns ``by``
    + definition, normalise. Reward models flagged ``degenerate`` (column, non-empty) are left out and counted
    in ``n_excluded``.
    """
    by = list(by)
    mins = dict(tau_stats.MIN_SIZES if minimums is None else minimums)
    rt = rm_pairs[rm_pairs.half == "test"]
    pt = policy_pairs[policy_pairs.half == "test"]
    rows = []
    cells = dict(iter(rt.groupby(by, sort=False)))  # the RM outcomes of each cell, looked up once per cell
    for key, g in pt.groupby(by + ["definition", "normalise"], sort=True):
        key = dict(zip(by + ["definition", "normalise"], key))
        r = cells.get(tuple(key[c] for c in by), rt.iloc[:0])
        deg = set(r.loc[r.get("degenerate", pd.Series("", index=r.index)).fillna("").astype(str) != "", "rm"])
        g, r = g[~g.rm.isin(deg)], r[~r.rm.isin(deg)]
        if g.duplicated(["rm", "pair_id"]).any():
            raise ValueError(f"tau_table_pairs: several w per reward model in cell {key}; pass one w per model")
        unit = "rm" if level == "rm" else "method"
        user_of = r.drop_duplicates("pair_id").set_index("pair_id").user
        method_of = r.drop_duplicates("rm").set_index("rm").method
        sizes = (g[unit].nunique(), g.pair_id.nunique(), user_of.reindex(g.pair_id.unique()).nunique())
        if status := tau_stats.size_status(*sizes, mins):  # below the minimum sizes: no tau, nothing to tabulate
            n_groups = method_of.reindex(g.rm.unique()).nunique() if level == "rm" else sizes[0]
            res = tau_stats.no_tau(sizes[0], n_groups, sizes[1], sizes[2], n_boot, status)
            rows.append({**key, "level": level, **res, "n_excluded": len(deg)})
            continue
        Y = g.groupby([unit, "pair_id"], sort=True).correct.mean().unstack("pair_id")  # pivot_table's mean, faster
        X = r.groupby([unit, "pair_id"], sort=True).rm_correct.mean().unstack("pair_id").reindex_like(Y)
        if X.isna().any().any():
            raise ValueError(f"tau_table_pairs: RM and policy outcomes cover different pairs in cell {key}")
        pair_groups = user_of.reindex(Y.columns).to_numpy()
        if level == "rm":
            model_groups = method_of.reindex(Y.index).to_numpy()
        else:
            model_groups = np.arange(len(Y))
        res = tau_stats.kendall_tau_hier_ci(X.to_numpy(), Y.to_numpy(), model_groups, pair_groups, n_boot=n_boot,
                                          seed=seed, minimums=mins)
        if level == "method":  # a handful of methods: the exact permutation p, no bootstrap CI
            res["ci_lo"] = res["ci_hi"] = float("nan")
        rows.append({**key, "level": level, **res, "n_excluded": len(deg)})
    return pd.DataFrame(rows)


def _taus(rm_pairs, at_dep, fixed, meta, n_boot, seed, minimums=None) -> pd.DataFrame:
    """tau at the deployed w (per reward model and per method), then per reward model at each fixed w != 0 of
    ``fixed`` (raw scores; at w = 0 every reward model has the same policy accuracy: no tau)."""
    taus = [tau_table_pairs(rm_pairs, at_dep, level=lv, n_boot=n_boot, seed=seed, minimums=minimums).assign(w="deployed")
            for lv in ("rm", "method")]
    for w in sorted(fixed.w.unique()):
        if w != 0:
            f = fixed[(fixed.w == w) & (~fixed.normalise.astype(bool))].merge(meta[["task", "rm", "method"]],
                                                                              on=["task", "rm"])
            taus.append(tau_table_pairs(rm_pairs, f, level="rm", n_boot=n_boot, seed=seed, minimums=minimums).assign(w=w))
    return pd.concat(taus, ignore_index=True)


TAU_COLUMNS = ["task", "policy", "definition", "level", "n", "n_pairs", "n_users", "tau", "ci_lo", "ci_hi", "p_exact",
               "n_degenerate", "status", "n_excluded"]


def policy_tables(rm_pairs: pd.DataFrame, pol_pairs: pd.DataFrame, rm_index: pd.DataFrame, n_boot: int = 1000,
                  seed: int = 0, fixed_w: bool = True, deploy_definition: str = DEPLOY_DEFINITION,
                  kl_targets=(0.05, 0.2), minimums=None) -> dict[str, pd.DataFrame]:
    """Every table of policy accuracy from notebook 04's per-pair outcomes (:func:`score_selection`):

    * ``deployed``: each reward model's one deployed setting (:func:`deployed_settings`), notebook 05's input;
      ``at_deployed``: its per-pair outcomes there (with ``method``);
    * ``policy_accuracy``: test-half accuracies at every w; ``policy_accuracy_deployed``: at the deployed w (one
      row per reward model, user group, definition, normalisation) with out-of-support rates, the base policy's
      accuracy under the same definition and the RM metadata; ``policy_accuracy_by_method``: seen users, raw
      scores, per method (mean over its reward models);
    * ``tau_rm_policy_all``: Kendall tau-b RM accuracy vs policy accuracy in every cell, at the deployed w
      (``level`` rm and method) and (``fixed_w``) at each fixed w != 0; ``tau_rm_policy``: seen users, raw
      scores, deployed w; ``tau_rm_policy_vs_w``: seen users, raw scores, per reward model, each fixed w;
    * ``kl_vs_w``: the measured steering strength of every reward model at every w (:func:`kl_curves`);
      ``policy_accuracy_at_kl`` / ``tau_rm_policy_at_kl``: at matched KL (:func:`matched_kl`, seen users, raw);
    * ``base_ranking_accuracy``: the base policy's own accuracy (w = 0) per definition, raw scores.

    ``minimums``: the minimum sizes of a tau cell (default :data:`lib.evaluation.tau_stats.MIN_SIZES`).
    """
    meta = rm_index[META_COLUMNS]
    deployed = deployed_settings(pol_pairs, rm_pairs, deploy_definition)
    at_dep = at_deployed(pol_pairs, deployed).merge(meta[["task", "rm", "method"]], on=["task", "rm"])
    pa = accuracy_rows(rm_pairs, pol_pairs).merge(meta, on=["task", "rm"], how="left")
    pa_dep = (accuracy_rows(rm_pairs.drop(columns=["method"], errors="ignore"), at_dep.drop(columns="method"),
                            base_pairs=pol_pairs)
              .merge(deployed[["task", "policy", "rm", "method_pick", "step_scale", "val_acc"]],
                     on=["task", "policy", "rm"], how="left")
              .rename(columns={"w": "w_deployed"}).merge(meta, on=["task", "rm"], how="left"))
    pa_method = (pa_dep[(pa_dep.user_group == "seen") & (~pa_dep.normalise)]
                 .assign(flagged=lambda d: d.degenerate != "")
                 .groupby(["task", "policy", "definition", "method"], sort=True)
                 .agg(models=("rm", "size"), degenerate=("flagged", "sum"), w_deployed=("w_deployed", "median"),
                      kl=("kl", "mean"), rm_acc=("rm_acc", "mean"), policy_acc=("policy_acc", "mean"),
                      base_acc=("base_acc", "first"), oos_chosen=("oos_chosen", "first"),
                      oos_rejected=("oos_rejected", "first"))
                 .reset_index())
    taus = _taus(rm_pairs, at_dep, pol_pairs if fixed_w else pol_pairs.iloc[:0], meta, n_boot, seed, minimums)
    seen_raw = (taus.user_group == "seen") & (~taus.normalise.astype(bool))
    main = taus[seen_raw & (taus.w == "deployed")][TAU_COLUMNS].reset_index(drop=True)
    vs_w = taus[seen_raw & (taus.level == "rm") & (taus.w != "deployed")]
    mk = matched_kl(pol_pairs[pol_pairs.user_group == "seen"], kl_targets)
    at_kl = pol_pairs.merge(mk, on=["task", "policy", "rm", "w"], how="inner")
    at_kl = at_kl[~at_kl.normalise.astype(bool)]
    pa_kl = pd.concat([accuracy_rows(rm_pairs, g, base_pairs=pol_pairs).assign(kl_target=t)
                       for t, g in at_kl.groupby("kl_target", sort=True)], ignore_index=True).merge(
        meta, on=["task", "rm"], how="left") if len(at_kl) else pd.DataFrame()
    tau_kl = pd.concat([tau_table_pairs(rm_pairs, g.merge(meta[["task", "rm", "method"]], on=["task", "rm"]),
                                        n_boot=n_boot, seed=seed, minimums=minimums).assign(kl_target=t)
                        for t, g in at_kl.groupby("kl_target", sort=True)], ignore_index=True) if len(at_kl) else \
        pd.DataFrame(columns=TAU_COLUMNS + ["kl_target"])
    if len(tau_kl):
        tau_kl = tau_kl[tau_kl.user_group == "seen"][["kl_target"] + TAU_COLUMNS].reset_index(drop=True)
    base_rank = pa_dep[~pa_dep.normalise].groupby(["task", "policy", "user_group", "definition"], sort=True).agg(
        base_acc=("base_acc", "first"), oos_chosen=("oos_chosen", "first"),
        oos_rejected=("oos_rejected", "first")).reset_index()
    return {"deployed": deployed, "at_deployed": at_dep, "policy_accuracy": pa, "policy_accuracy_deployed": pa_dep,
            "policy_accuracy_by_method": pa_method, "tau_rm_policy_all": taus, "tau_rm_policy": main,
            "tau_rm_policy_vs_w": vs_w, "kl_vs_w": kl_curves(pol_pairs, rm_index), "policy_accuracy_at_kl": pa_kl,
            "tau_rm_policy_at_kl": tau_kl, "base_ranking_accuracy": base_rank}
