"""Notebook 03: one user's queries decoded greedily and with reward-guided decoding over a grid of ``w``.

* :func:`pick_user` - the user (default: the first seen user, sorted ids, with a known rule) and their queries;
* :func:`load_method_rms` - one reward model per method for each policy (seed 0, full responses) and its scale;
* :func:`decode_sweep` - greedy (``w = 0``) and every (method, w) as rows of one RGD batch, per policy;
* :func:`score_decodes` - ROUGE-1 against the user's own output and rule following, as rgd/decodes.csv;
* :func:`most_moved_method`, :func:`candidate_table` - the step-by-step view of one decoding.

The figure is :func:`lib.report.plots.plot_rgd_sweep` (notebook 06), from :func:`lib.core.schema.read_decodes`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def pick_user(queries: list[dict], user: str | None = None, n_queries: int = 2) -> tuple[str, list[dict]]:
    """``(user, their first n_queries queries by id)`` among the *seen* users' ``queries``; ``user=None``: the
    first seen user (sorted ids) with a known rule, or the first seen user when no query has one."""
    seen = [q for q in queries if q["user_group"] == "seen"]
    if user is None:
        user = sorted({q["user"] for q in seen if q.get("rule")} or {q["user"] for q in seen})[0]
    qs = sorted([q for q in seen if q["user"] == user], key=lambda q: q["query_id"])[:n_queries]
    if not qs:
        raise ValueError(f"user {user!r} has no seen queries")
    return user, qs


def _is_true(col: pd.Series) -> pd.Series:
    return col.astype(str).str.lower().isin(["true", "1"])


def load_method_rms(rms_root, task: str, policies: list[str], backbone: str = "policy",
                    calibrated: bool = False) -> tuple[dict, pd.DataFrame]:
    """``({(policy, method): RewardModel}, their table)``: from ``rms_root/index.csv``, for each policy the
    first model of each method on ``task`` with seed 0, trained on full responses, on the policy's own hidden
    states (``backbone="policy"``) or on ``backbone``; the table has RM accuracy and calibration (mean, sd)."""
    from .. import rewards

    rms_root = Path(rms_root)
    index = rewards.read_rm_index(rms_root / "index.csv")
    index = index[index.path.notna()]  # skipped (diverged) models have no files
    rms, rows = {}, []
    for policy in policies:
        bb = policy if backbone == "policy" else backbone
        sel = index[(index.task == task) & (index.backbone == bb) & (index.seed.astype(int) == 0)
                    & ~_is_true(index.prefix_train)].drop_duplicates("method")
        if sel.empty:
            raise ValueError(f"no reward model for task={task}, backbone={backbone} (policy {policy}) in "
                             f"{rms_root / 'index.csv'}")
        for r in sel.itertuples():
            rm = rewards.load_reward_model(r.path, calibrated=calibrated)
            rms[policy, r.method] = rm
            rows.append({"policy": policy, "method": r.method, "rm_acc_seen": float(r.rm_acc_seen),
                         "cal_mean": float(rm.cal_mu), "cal_sd": float(rm.cal_sd), "degenerate": r.degenerate})
    return rms, pd.DataFrame(rows)


def decode_sweep(model, tok, policy: str, rms: dict, qs: list[dict], user: str, ws: list[float], k: int = 10,
                 max_new_tokens: int = 16) -> tuple[list[dict], str]:
    """Rows ``{policy, method, w, query_id, generation, rgd_path}`` of one policy and the RGD reward path taken
    (``rgd_path``: ``plain`` for the greedy ``w = 0`` rows, else the path of lib/decoding/rgd.py the batch took).

    Greedy decoding gives every method's ``w = 0`` row; every (method, w) of ``rms[policy, method]`` x ``ws``
    is a row of one RGD batch (the policy forward is shared, each row applies its own head)."""
    from ..decoding import rgd

    prompts = [q["prompt"] for q in qs]
    base = rgd.generate(model, tok, prompts, settings=rgd.DecodingSettings(max_new_tokens=max_new_tokens),
                        policy_name=policy)
    methods = [m for p, m in rms if p == policy]
    rows = [{"policy": policy, "method": m, "w": 0.0, "query_id": q["query_id"], "generation": text.strip(),
             "rgd_path": base.path} for q, text in zip(qs, base.texts) for m in methods]  # w = 0 is the same greedy output for every method
    settings = [(m, w) for m in methods for w in ws]
    out = rgd.generate(model, tok, prompts * len(settings), users=[user] * len(prompts) * len(settings),
                       rm=[rms[policy, m] for m, _ in settings for _ in prompts],
                       w=[w for _, w in settings for _ in prompts],
                       settings=rgd.DecodingSettings(k=k, max_new_tokens=max_new_tokens), policy_name=policy)
    for i, text in enumerate(out.texts):
        (m, w), q = settings[i // len(prompts)], qs[i % len(prompts)]
        rows.append({"policy": policy, "method": m, "w": w, "query_id": q["query_id"], "generation": text.strip(),
                     "rgd_path": out.path})
    return rows, out.path


def score_decodes(rows: list[dict], qs: list[dict], task: str, user: str, calibrated: bool) -> pd.DataFrame:
    """rgd/decodes.csv: the rows of :func:`decode_sweep` with the reference, ROUGE-1 against it, whether the
    generation follows the user's synthetic rule (when the queries have one), and task, user, calibrated."""
    from ..data import synthetic
    from . import metrics

    dec = pd.DataFrame(rows)
    dec["reference"] = dec.query_id.map({q["query_id"]: q["reference"] for q in qs})
    dec["rouge1"] = metrics.rouge_scores(dec.generation.tolist(), dec.reference.tolist())["rouge1"].values
    rule = qs[0].get("rule")
    if rule:
        dec["follows_rule"] = [synthetic.follows_rule(rule, g) for g in dec.generation]
    return dec.assign(task=task, user=user, calibrated=calibrated)


def most_moved_method(dec: pd.DataFrame, policy: str) -> str:
    """The method of ``policy`` whose RGD rows (``w > 0``) differ most often from greedy (first on ties)."""
    sub = dec[dec.policy == policy]
    greedy = sub[sub.w == 0].set_index("query_id").generation.groupby(level=0).first()
    moved = (sub.w > 0) & (sub.generation != sub.query_id.map(greedy))
    methods = list(pd.unique(sub.method))
    return max(methods, key=lambda m: moved[(sub.method == m) & (sub.w > 0)].mean())


def candidate_table(out, tok, row: int = 0) -> pd.DataFrame:
    """One row of an ``rgd.generate(..., return_scores=True)`` output, step by step: every candidate token
    with its policy log-probability, reward, combined score and whether it was chosen."""
    steps = []
    for t in range(out.cand_ids.shape[1]):
        for j in range(out.cand_ids.shape[2]):
            cid = int(out.cand_ids[row, t, j])
            if cid < 0:
                continue
            steps.append({"step": t, "candidate": repr(tok.decode([cid])), "log p": float(out.cand_logp[row, t, j]),
                          "reward": float(out.cand_reward[row, t, j]), "score": float(out.cand_score[row, t, j]),
                          "chosen": j == int(out.chosen[row, t])})
    return pd.DataFrame(steps)
