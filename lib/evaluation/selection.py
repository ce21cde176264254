"""Policy accuracy of every reward model, and the accounting of selecting ``w`` on validation pairs.

Notebook 04 as functions: :func:`score_selection` teacher-forces the test pairs of every dataset once per
(policy, reward backbone) and scores each reward model on them (:func:`score_pairs`: the RM outcome of each
pair and the policy outcome under each definition, normalisation and ``w``); the pairs are split into a
*val* half that selects each reward model's ``w`` (:func:`select_w`) and a *test* half that reports
(:func:`split_halves`). :func:`policy_tables` turns those per-pair outcomes into every table of notebooks 04
and 06 (accuracies at the selected ``w``, Kendall tau-b between RM accuracy and policy accuracy, the base
policy's own ranking accuracy).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..core import models
from . import metrics
from .policy_accuracy import outcome, sequence_scores, teacher_forced_sets

META_COLUMNS = ["task", "rm", "method", "backbone", "seed", "prefix_train", "degenerate"]


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
def score_pairs(policy, tok, rms: dict, pairs: list[dict], ws, definitions=("cumulative", "rgd_likelihood"),
                k: int = 10, policy_name: str | None = None, featurizer=None, batch_size: int = 16,
                progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Teacher-force every pair once for all reward models ``rms`` (one backbone) and score them.

    Returns two long tables, one row per (reward model, pair) and per (reward model, pair, definition,
    normalise, w):

    * ``rm``: ``rm_correct`` (RM accuracy outcome: the reward of the chosen full response, the state of
      its end token, above the rejected one's) and ``reward_margin`` (that difference, in the model's
      decoding units: calibrated by default);
    * ``policy``: ``correct``, the policy-accuracy outcome of the pair under each definition and ``w``.
    """
    if not pairs:
        return pd.DataFrame(), pd.DataFrame()
    tc, tr = teacher_forced_sets(policy, tok, rms, [p["prompt"] for p in pairs],
                                 [[p["chosen"] for p in pairs], [p["rejected"] for p in pairs]],
                                 [p["user"] for p in pairs], k=k, policy_name=policy_name, featurizer=featurizer,
                                 batch_size=batch_size, progress=progress)
    ids = [p["pair_id"] for p in pairs]
    rm_rows, pol = [], []
    ws = np.asarray(ws, dtype=float)
    for key in rms:
        margin = np.array([c.r_gold[-1] - r.r_gold[-1] for c, r in zip(tc[key], tr[key])])
        rm_rows.append(pd.DataFrame({"rm": key, "pair_id": ids, "rm_correct": outcome(margin), "reward_margin": margin}))
        for d in definitions:
            for norm in (False, True):
                m = sequence_scores(tc[key], ws, d, norm) - sequence_scores(tr[key], ws, d, norm)  # [N, W]
                pol.append(pd.DataFrame({"rm": key, "pair_id": np.repeat(ids, len(ws)), "definition": d,
                                         "normalise": norm, "w": np.tile(ws, len(ids)),
                                         "correct": outcome(m).ravel()}))
    return pd.concat(rm_rows, ignore_index=True), pd.concat(pol, ignore_index=True)


def score_selection(P, policies, datasets, rm_index: pd.DataFrame, ws, definitions, *, seed: int = 0,
                    val_frac: float = 0.5, rgd_k: int = 10, calibrated: bool = True, rm_methods=None,
                    rm_backbones="policy", rm_seeds=None, rm_prefix_train=None, max_pairs_per_group=None,
                    batch_size: int = 16, load_model=models.load_causal_lm) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 04's per-pair outcomes: for every policy and dataset, the test pairs (:func:`test_pairs`)
    scored by every selected reward model (:func:`score_pairs`, one teacher-forced pass per backbone), each
    row annotated with ``task``, ``policy``, ``user_group`` and ``half`` (:func:`split_halves`).

    ``rm_index``: notebook 02's index (``rewards.read_rm_index``); the reward models of a dataset are
    selected by ``rewards.select_rms`` and loaded (adapted to unseen users) by ``rewards.load_task_rms``.
    ``load_model(policy) -> (model, tok)`` loads a policy (injectable for tests). Returns ``(rm_pairs,
    pol_pairs)``; ``rm_pairs`` carries the reward models' metadata (:data:`META_COLUMNS`).
    """
    from .. import rewards

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
            print(f"{policy} / {ds}: {len(rms)} reward models x {len(test)} test pairs "
                  f"({sum(halves[p] == 'val' for p in groups)} select w)")
            for _backbone, grp in sel.groupby("backbone", sort=True):
                group = {r: rms[r] for r in grp.rm}
                r_df, p_df = score_pairs(model, tok, group, test, ws, definitions, k=rgd_k, policy_name=policy,
                                         featurizer=next(iter(group.values()))._featurizer, batch_size=batch_size)
                for df, out in ((r_df, rm_pairs), (p_df, pol_pairs)):
                    df.insert(0, "policy", policy)
                    df.insert(0, "task", ds)
                    df["user_group"] = df.pair_id.map(groups)
                    df["half"] = df.pair_id.map(halves)
                    out.append(df)
        del model
    rm_pairs = pd.concat(rm_pairs, ignore_index=True).merge(rm_index[META_COLUMNS], on=["task", "rm"], how="left")
    return rm_pairs, pd.concat(pol_pairs, ignore_index=True)


# ----------------------------------------------------------------------------- selecting w, accuracies
def select_w(policy_pairs: pd.DataFrame, by=("task", "policy", "rm", "user_group", "definition", "normalise")) -> pd.DataFrame:
    """The w of each reward model with the highest policy accuracy on the *val* half (ties: the smaller w).

    ``w = 0`` (the base policy) is a candidate when it is in the grid, so a reward model that does not help
    falls back to the base policy instead of being reported at a w that wrecks it. Returns one row per
    group of ``by`` with ``w_selected`` and ``val_acc`` (its validation accuracy).
    """
    by = list(by)
    val = policy_pairs[policy_pairs.half == "val"]
    if val.empty:
        raise ValueError("select_w: no pairs in the val half (see split_halves)")
    acc = val.groupby(by + ["w"], sort=True).correct.mean().rename("val_acc").reset_index()
    acc = acc.sort_values(by + ["val_acc", "w"], ascending=[True] * len(by) + [False, True], kind="stable")
    return acc.groupby(by, sort=True).head(1).rename(columns={"w": "w_selected"}).reset_index(drop=True)


def at_selected_w(policy_pairs: pd.DataFrame, selected: pd.DataFrame) -> pd.DataFrame:
    """The per-pair policy outcomes of each reward model at its validation-selected w (all halves)."""
    keys = [c for c in selected.columns if c not in ("w_selected", "val_acc")]
    m = policy_pairs.merge(selected[keys + ["w_selected"]], on=keys, how="inner")
    return m[m.w == m.w_selected].drop(columns="w_selected")


def accuracy_rows(rm_pairs: pd.DataFrame, policy_pairs: pd.DataFrame, by=("task", "policy", "user_group"),
                  base_pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Test-half accuracies: one row per (``by``, rm, definition, normalise, w) with ``policy_acc``,
    ``ties``, ``n_pairs``, the RM accuracy ``rm_acc`` and mean ``reward_margin`` of that reward model on the
    same pairs, and ``base_acc``: the base policy's own ranking accuracy (cumulative score at w = 0, raw),
    the chance reference of every policy-accuracy number (the same for every reward model), read from
    ``base_pairs`` (default ``policy_pairs``; pass the full table when ``policy_pairs`` holds only the
    selected w of each model)."""
    by = list(by)
    pt = policy_pairs[policy_pairs.half == "test"]
    rt = rm_pairs[rm_pairs.half == "test"]
    bt = pt if base_pairs is None else base_pairs[base_pairs.half == "test"]
    g = pt.groupby(by + ["rm", "definition", "normalise", "w"], sort=True).correct
    out = pd.concat([g.mean().rename("policy_acc"), g.apply(lambda c: float((c == 0.5).mean())).rename("ties"),
                     g.size().rename("n_pairs")], axis=1).reset_index()
    r = rt.groupby(by + ["rm"], sort=True).agg(rm_acc=("rm_correct", "mean"), reward_margin=("reward_margin", "mean"))
    out = out.merge(r.reset_index(), on=by + ["rm"], how="left")
    base = bt[(bt.w == 0) & (bt.definition == "cumulative") & (~bt.normalise.astype(bool))]
    if len(base):  # identical for every reward model (w = 0): take one
        b = base.groupby(by + ["pair_id"], sort=True).correct.first().groupby(by).mean().rename("base_acc")
        out = out.merge(b.reset_index(), on=by, how="left")
    else:
        out["base_acc"] = np.nan
    return out


def tau_table_pairs(rm_pairs: pd.DataFrame, policy_pairs: pd.DataFrame, by=("task", "policy", "user_group"),
                    level: str = "rm", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Kendall tau-b between RM accuracy and policy accuracy across reward models (``level="rm"``) or across
    methods (``level="method"``: a method's per-pair outcomes averaged over its seeds and prefix variants),
    on the test half, with a bootstrap over models *and* pairs (:func:`lib.evaluation.metrics.kendall_tau_pairs_ci`).

    ``policy_pairs`` holds one w per reward model (e.g. :func:`at_selected_w`, or one fixed w) and the
    columns ``by`` + definition, normalise. Reward models flagged ``degenerate`` (column, non-empty) are
    left out and counted in ``n_excluded``.
    """
    by = list(by)
    rt = rm_pairs[rm_pairs.half == "test"]
    pt = policy_pairs[policy_pairs.half == "test"]
    rows = []
    for key, g in pt.groupby(by + ["definition", "normalise"], sort=True):
        key = dict(zip(by + ["definition", "normalise"], key))
        r = rt
        for c in by:
            r = r[r[c] == key[c]]
        deg = set(r.loc[r.get("degenerate", pd.Series("", index=r.index)).fillna("").astype(str) != "", "rm"])
        g, r = g[~g.rm.isin(deg)], r[~r.rm.isin(deg)]
        unit = "rm" if level == "rm" else "method"
        if g.duplicated(["rm", "pair_id"]).any():
            raise ValueError(f"tau_table_pairs: several w per reward model in cell {key}; pass one w per model")
        Y = g.pivot_table(index=unit, columns="pair_id", values="correct", aggfunc="mean")
        X = r.pivot_table(index=unit, columns="pair_id", values="rm_correct", aggfunc="mean").reindex_like(Y)
        if X.isna().any().any():
            raise ValueError(f"tau_table_pairs: RM and policy outcomes cover different pairs in cell {key}")
        res = metrics.kendall_tau_pairs_ci(X.to_numpy(), Y.to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({**key, "level": level, **res, "n_excluded": len(deg)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the tables of notebooks 04 and 06
def _taus(rm_pairs, pol_pairs, at_sel, meta, n_boot, seed, fixed_w: bool) -> pd.DataFrame:
    """tau at the selected w (per reward model and per method), then (``fixed_w``) per reward model at each
    fixed w != 0 (at w = 0 every reward model has the same policy accuracy: no tau)."""
    taus = [tau_table_pairs(rm_pairs, at_sel, level=lv, n_boot=n_boot, seed=seed).assign(w="selected")
            for lv in ("rm", "method")]
    for w in sorted(pol_pairs.w.unique()) if fixed_w else ():
        if w != 0:
            fixed = pol_pairs[pol_pairs.w == w].merge(meta[["task", "rm", "method"]], on=["task", "rm"])
            taus.append(tau_table_pairs(rm_pairs, fixed, level="rm", n_boot=n_boot, seed=seed).assign(w=w))
    return pd.concat(taus, ignore_index=True)


def policy_tables(rm_pairs: pd.DataFrame, pol_pairs: pd.DataFrame, rm_index: pd.DataFrame, n_boot: int = 1000,
                  seed: int = 0, fixed_w: bool = True) -> dict[str, pd.DataFrame]:
    """Every table of policy accuracy from notebook 04's per-pair outcomes (:func:`score_selection`):

    * ``selected``: each reward model's val-selected w (:func:`select_w`); ``at_selected``: its per-pair
      outcomes there (:func:`at_selected_w`, with ``method``);
    * ``policy_accuracy``: test-half accuracies at every w; ``policy_accuracy_selected``: at the selected w
      (one row per reward model, user group, definition, normalisation), both with the RM metadata;
    * ``policy_accuracy_by_method``: seen users, raw scores, per method (mean over its reward models);
    * ``tau_rm_policy_all``: Kendall tau-b RM accuracy vs policy accuracy in every cell, at the selected w
      (``level`` rm and method) and (``fixed_w``) at each fixed w != 0; ``tau_rm_policy``: seen users, raw
      scores, selected w; ``tau_rm_policy_vs_w``: seen users, raw scores, per reward model, each fixed w;
    * ``base_ranking_accuracy``: the base policy's own ranking accuracy (cumulative, w = 0, raw).
    """
    meta = rm_index[META_COLUMNS]
    selected = select_w(pol_pairs)
    at_sel = at_selected_w(pol_pairs, selected).merge(meta[["task", "rm", "method"]], on=["task", "rm"])
    pa = accuracy_rows(rm_pairs, pol_pairs).merge(meta, on=["task", "rm"], how="left")
    pa_sel = (accuracy_rows(rm_pairs.drop(columns=["method"], errors="ignore"), at_sel.drop(columns="method"),
                            base_pairs=pol_pairs)
              .merge(selected, on=["task", "policy", "rm", "user_group", "definition", "normalise"], how="left")
              .drop(columns="w").merge(meta, on=["task", "rm"], how="left"))
    pa_method = (pa_sel[(pa_sel.user_group == "seen") & (~pa_sel.normalise)]
                 .assign(flagged=lambda d: d.degenerate != "")
                 .groupby(["task", "policy", "definition", "method"], sort=True)
                 .agg(models=("rm", "size"), degenerate=("flagged", "sum"), w_selected=("w_selected", "median"),
                      rm_acc=("rm_acc", "mean"), policy_acc=("policy_acc", "mean"), base_acc=("base_acc", "first"))
                 .reset_index())
    taus = _taus(rm_pairs, pol_pairs, at_sel, meta, n_boot, seed, fixed_w)
    main = taus[(taus.user_group == "seen") & (~taus.normalise.astype(bool)) & (taus.w == "selected")]
    main = main[["task", "policy", "definition", "level", "n", "n_pairs", "tau", "ci_lo", "ci_hi", "p",
                 "n_excluded"]].reset_index(drop=True)
    vs_w = taus[(taus.user_group == "seen") & (~taus.normalise.astype(bool)) & (taus.level == "rm")
                & (taus.w != "selected")]
    base_rank = pa_sel[(pa_sel.definition == "cumulative") & (~pa_sel.normalise)]
    base_rank = base_rank.groupby(["task", "policy", "user_group"], sort=True).base_acc.first().reset_index()
    return {"selected": selected, "at_selected": at_sel, "policy_accuracy": pa, "policy_accuracy_selected": pa_sel,
            "policy_accuracy_by_method": pa_method, "tau_rm_policy_all": taus, "tau_rm_policy": main,
            "tau_rm_policy_vs_w": vs_w, "base_ranking_accuracy": base_rank}
