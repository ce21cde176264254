"""Evaluate your own reward model with this project's metrics: RM accuracy and policy accuracy on pairs, and
reward-guided generations scored by ROUGE against the users' own outputs on Pref-LaMP queries.

    python -m lib.evaluation.own_rm --rm PATH [--pairs PAIRS] [--queries QUERIES] [--policy smollm2-135m]
                                    [--ws 0 0.5 1] [--k 10] [--max-new-tokens 16] [--out DIR]

``rm`` (:func:`load_own_rm`): a :class:`~lib.rewards.RewardModel` object, a folder written by its ``save``
(``config.json`` with a ``method`` + ``model.safetensors``), or a Hugging Face sequence-classification checkpoint
with one label (a folder, a hub id or a mapped name, :mod:`lib.core.models`), wrapped as a user-independent,
raw, text-path reward model (:mod:`lib.rewards.seq_cls`). ``PAIRS`` / ``QUERIES``: a JSONL file, a Pref-LaMP
build folder or an exported dataset (:mod:`lib.evaluation.own_data`; the test split by default).

* :func:`evaluate_reward_model`: both accuracies from :func:`lib.evaluation.selection.score_pairs` (one
  teacher-forced pass per pair), as in notebook 04: RM accuracy compares the rewards of the full chosen and
  rejected responses, policy accuracy the RGD scores ``S_w`` of each definition (raw and length-normalised);
  ties count one half.
* :func:`generate_and_score`: notebook 05's generation (:func:`lib.evaluation.generation.evaluate`): the base
  policy's greedy output and RGD (:mod:`lib.decoding.rgd`, ``k`` candidates a step) at each ``w``, cleaned like
  notebook 05's and scored with ROUGE-1 / ROUGE-L F (:func:`lib.evaluation.metrics.rouge_scores`) against each
  query's ``reference``; :func:`rouge_table` puts the base policy (``w = 0``) beside each ``w``.

Units of ``w``: with ``step_calibration`` (notebook 04's default) policy accuracy divides ``w`` by the reward
model's within-step spread of candidate rewards on the pairs (``step_scale`` of the result), so one ``w`` means
about the same steering for every reward model. Generation decodes with ``w / step_scale``: pass the
``step_scale`` that :func:`evaluate_reward_model` measured for the same units (the CLI does so when it has
pairs); the default 1.0 is the reward model's own guidance units (a checkpoint's raw logit). Nothing is cached.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from ..core import models
from ..rewards.seq_cls import LogitFeaturizer, SequenceClassifierRM  # noqa: F401 (re-exported)
from ..rewards.seq_cls import load_any_reward_model as load_own_rm
from .own_data import check_pairs, check_queries, read_pairs, read_queries  # noqa: F401 (re-exported)

DEFINITIONS = ("cumulative", "rgd_likelihood")


def _policy(policy, device, policy_name):
    """(model, tok, name) of a policy given by name / folder / hub id or as a loaded ``(model, tok)``."""
    model, tok = models.load_causal_lm(policy, device=device) if isinstance(policy, str) else policy
    return model, tok, models.registry_name(model, policy_name or (policy if isinstance(policy, str) else None))


def _check_ws(ws, k: int, step_scale: float = 1.0) -> list[float]:
    ws = [float(w) for w in ws]
    if not ws or not all(math.isfinite(w) for w in ws) or len(set(ws)) != len(ws):
        raise ValueError(f"ws must be distinct finite numbers, got {ws}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, not {k!r}")
    if not (isinstance(step_scale, (int, float)) and math.isfinite(step_scale) and step_scale > 0):
        raise ValueError(f"step_scale must be a finite number > 0, not {step_scale!r}")
    return ws


def evaluate_reward_model(rm, pairs, policy="smollm2-135m", ws=(0.0, 0.5, 1.0), k: int = 10,
                          definitions=DEFINITIONS, device=None, batch_size: int = 16, step_calibration: bool = True,
                          policy_name: str | None = None) -> dict:
    """RM accuracy and policy accuracy at each ``w`` of the reward model ``rm`` on ``pairs``.

    ``rm``: see :func:`load_own_rm`. ``pairs``: dicts with ``prompt``, ``chosen``, ``rejected``, ``user``,
    ``pair_id`` (:func:`read_pairs`; a reward model of this project must know every user). ``policy``: a model
    name, folder or hub id (:func:`lib.core.models.load_causal_lm`) or a loaded ``(model, tokenizer)``
    (``policy_name``: its registry name). ``k``: RGD candidates per step.

    Returns ``{"n_pairs", "rm_acc", "step_scale", "policy_acc"}``: ``policy_acc`` is a DataFrame with one row per
    (definition, normalise, w) and its accuracy; ``step_scale`` is 1.0 without ``step_calibration``.
    """
    from .selection import score_pairs

    pairs = check_pairs(pairs)
    ws = _check_ws(ws, k)
    model, tok, name = _policy(policy, device, policy_name)
    reward_model = load_own_rm(rm, device=device)
    rm_rows, pol = score_pairs(model, tok, {"rm": reward_model}, pairs, ws, definitions=definitions, k=k,
                               policy_name=name, batch_size=batch_size, step_calibration=step_calibration)
    acc = (pol.groupby(["definition", "normalise", "w"], sort=True)["correct"].mean()
           .rename("policy_acc").reset_index())
    return {"n_pairs": len(pairs), "rm_acc": float(rm_rows["rm_correct"].mean()),
            "step_scale": float(rm_rows["step_scale"].iloc[0]), "policy_acc": acc}


def table(result: dict) -> pd.DataFrame:
    """The result of :func:`evaluate_reward_model` as one wide table: a row per (definition, normalise), a
    column per ``w``, and the RM accuracy beside it."""
    wide = result["policy_acc"].pivot_table(index=["definition", "normalise"], columns="w", values="policy_acc")
    wide.columns = [f"policy_acc@w={w:g}" for w in wide.columns]
    return wide.reset_index().assign(rm_acc=result["rm_acc"], n_pairs=result["n_pairs"])


def generate_and_score(rm, queries, policy="smollm2-135m", ws=(0.5, 1.0), k: int = 10, max_new_tokens: int = 16,
                       step_scale: float = 1.0, device=None, batch_size: int = 8, rgd_batch_size: int = 16,
                       unknown_users: str = "error", name: str | None = None, policy_name: str | None = None,
                       progress: bool = False) -> pd.DataFrame:
    """Base and reward-guided generations of ``queries`` and their ROUGE against each query's ``reference``.

    ``queries``: dicts with ``query_id``, ``task``, ``user``, ``prompt``, ``reference`` (:func:`read_queries`).
    ``rm``, ``policy``, ``k``: as in :func:`evaluate_reward_model`; RGD decodes with ``w / step_scale`` for each
    ``w`` of ``ws`` (module docstring). ``unknown_users``: ``"error"``, or ``"skip"`` the RGD rows of users a
    reward model of this project does not know. ``name``: the ``rm`` column (default: the path, or the method).

    Returns notebook 05's rows (:data:`lib.core.schema.ROW_COLUMNS`: one per query and system, ``system`` base or
    rgd, ``generation``, ``reference``, ``rouge1``, ``rougeL``) with ``w`` (nominal, NaN for base) and ``w_decode``.
    """
    from .generation import evaluate, rgd_adapter

    queries = check_queries(queries)
    ws = _check_ws(ws, k, step_scale)
    model, tok, pname = _policy(policy, device, policy_name)
    reward_model = load_own_rm(rm, device=device)
    name = name or (str(rm) if isinstance(rm, (str, Path)) else f"{reward_model.method}/{reward_model.backbone}")
    decode = {w / step_scale: w for w in ws}
    rgd_fn, rgd_tag = rgd_adapter(pname, k=k)
    rows = evaluate(queries, model, tok, pname, icl_ks=(), rms={name: reward_model}, ws=list(decode), rgd_fn=rgd_fn,
                    rgd_tag=rgd_tag, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    rgd_batch_size=rgd_batch_size, cache_dir=None, unknown_users=unknown_users, progress=progress)
    rgd = rows.system == "rgd"
    rows["w_decode"] = rows.param.where(rgd).astype(float)
    rows["w"] = rows.w_decode.map(decode)
    return rows


def rouge_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean ROUGE-1 / ROUGE-L per (task, rm, w) of :func:`generate_and_score`'s rows, with the base policy's
    on the same queries beside (``base_*``), the differences (``d_*``, RGD minus base) and ``changed``, the
    share of queries whose generation differs from the base policy's."""
    base = rows[rows.system == "base"].set_index("query_id")[["generation", "rouge1", "rougeL"]].add_prefix("base_")
    rgd = rows[rows.system == "rgd"].join(base, on="query_id")
    out = (rgd.assign(changed=rgd.generation != rgd.base_generation)
           .groupby(["task", "rm", "w", "w_decode"], sort=True)
           .agg(n=("query_id", "size"), rouge1=("rouge1", "mean"), base_rouge1=("base_rouge1", "mean"),
                rougeL=("rougeL", "mean"), base_rougeL=("base_rougeL", "mean"), changed=("changed", "mean"))
           .reset_index())
    return out.assign(d_rouge1=out.rouge1 - out.base_rouge1, d_rougeL=out.rougeL - out.base_rougeL)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    from ..core.io import write_text

    write_text(path, df.to_csv(index=False))
    print(f"wrote {path}")


def main(argv=None) -> int:
    """CLI: evaluate a reward model on pairs and / or queries, print the tables, write them as CSV to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rm", required=True, help="a saved reward model folder or a sequence-classification checkpoint")
    ap.add_argument("--pairs", help="pairs: JSONL (pair_id, prompt, chosen, rejected, user), a build or an export")
    ap.add_argument("--queries", help="queries: JSONL (query_id, task, user, prompt, reference), a build or an export")
    ap.add_argument("--split", default="test", help="split of a dataset / build (default test; 'all' for every one)")
    ap.add_argument("--policy", default="smollm2-135m", help="policy model name, folder or hub id")
    ap.add_argument("--ws", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--raw-w", action="store_true", help="no step calibration: w multiplies the raw reward")
    ap.add_argument("--out", help="folder for policy_acc.csv, rouge.csv and generations.csv")
    ap.add_argument("--device")
    a = ap.parse_args(argv)
    if not (a.pairs or a.queries):
        ap.error("give --pairs, --queries or both")
    split = None if a.split == "all" else a.split
    pairs = read_pairs(a.pairs, split) if a.pairs else None  # read both before any model loads: fail early
    queries = read_queries(a.queries, split) if a.queries else None
    model, tok, name = _policy(a.policy, a.device, None)
    rm = load_own_rm(a.rm, device=a.device)
    scale, tables = 1.0, {}
    fmt = lambda x: f"{x:.3f}"  # noqa: E731
    if pairs:
        res = evaluate_reward_model(rm, pairs, (model, tok), a.ws, a.k, device=a.device, policy_name=name,
                                    step_calibration=not a.raw_w)
        scale = res["step_scale"]
        tables["policy_acc.csv"] = table(res).assign(step_scale=scale)
        print(tables["policy_acc.csv"].to_string(index=False, float_format=fmt))
    if queries:
        print(f"generation: w / step_scale, step_scale = {scale:g}" + ("" if pairs and not a.raw_w else " (raw reward units)"))
        rows = generate_and_score(rm, queries, (model, tok), a.ws, a.k, a.max_new_tokens, step_scale=scale,
                                  device=a.device, name=a.rm, policy_name=name)
        tables |= {"rouge.csv": rouge_table(rows), "generations.csv": rows}
        print(tables["rouge.csv"].to_string(index=False, float_format=fmt))
    for fname, df in tables.items() if a.out else ():  # written once everything has run: no partial results
        _write_csv(df, Path(a.out) / fname)
    return 0


if __name__ == "__main__":
    sys.exit(main())
