"""Evaluate your own reward model: RM accuracy and policy accuracy at each ``w`` on a list of pairs.

    python -m lib.evaluation.own_rm --rm PATH --pairs FILE.jsonl [--policy smollm2-135m] [--ws 0 0.5 1] [--k 10]

``rm`` is a reward model of this project (a :class:`~lib.rewards.RewardModel`, or a folder written by its
``save``: ``config.json`` with a ``method`` and ``model.pt``) or a Hugging Face sequence-classification
checkpoint (a folder, a hub id or a mapped name, see :mod:`lib.core.models`; ``num_labels == 1``). The
checkpoint is wrapped as a *text-path* reward model, the path of this project's MiniLM reward models:
the reward of (prompt, response) is its logit, and reward-guided decoding re-encodes each candidate text
(:func:`lib.evaluation.policy_accuracy.teacher_forced_sets`, path c). It is user-independent and raw (not
calibrated: ``w`` multiplies the logit). The text it reads is the tokenizer's chat template applied to
``[user: prompt, assistant: response]`` when it has one, else the text pair ``(prompt, response)``.

Both accuracies come from :func:`lib.evaluation.selection.score_pairs` (one teacher-forced pass per pair),
as in notebook 04: RM accuracy compares the rewards of the full chosen and rejected responses, policy accuracy
the RGD scores ``S_w`` of each definition (raw and length-normalised). Ties count one half.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from ..core import models
from ..rewards.base import RewardModel

PAIR_FIELDS = ("pair_id", "prompt", "chosen", "rejected", "user")


class LogitFeaturizer:
    """Text-path featurizer of a sequence-classification checkpoint: the feature of (prompt, response) is
    its single logit (``[N, 1]``)."""

    kind = "encoder_mean"  # the text path: responses and candidates are scored as text
    dim = 1

    def __init__(self, model, tok, name: str, batch_size: int = 16, max_length: int = 1024):
        if model.config.num_labels != 1:
            raise ValueError(f"{name}: a reward model has one logit; this checkpoint has num_labels="
                             f"{model.config.num_labels}")
        if model.config.pad_token_id is None:  # batched sequence classification reads the last non-pad token
            model.config.pad_token_id = tok.pad_token_id
        self.model, self.tok, self.name, self.batch_size, self.max_length = model, tok, name, batch_size, max_length

    def texts(self, prompts, responses) -> list[str] | None:
        """The chat-formatted texts when the tokenizer has a chat template, else None (text pairs are used)."""
        if not models.has_chat_template(self.tok):
            return None
        return [self.tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                             tokenize=False) for p, r in zip(prompts, responses)]

    @torch.no_grad()
    def features(self, prompts, responses, progress: bool = False) -> torch.Tensor:
        """The logit of each (prompt, response), in batches (``[N, 1]``, float32, on the CPU)."""
        prompts, responses = list(prompts), list(responses)
        chat = self.texts(prompts, responses)
        dev = next(self.model.parameters()).device
        out = []
        for s in range(0, len(prompts), self.batch_size):
            if chat is not None:
                enc = self.tok(chat[s : s + self.batch_size], add_special_tokens=False, truncation=True,
                               max_length=self.max_length, padding=True, return_tensors="pt")
            else:
                enc = self.tok(prompts[s : s + self.batch_size], responses[s : s + self.batch_size],
                               truncation="only_first", max_length=self.max_length, padding=True, return_tensors="pt")
            out.append(self.model(**enc.to(dev)).logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0, 1)


class SequenceClassifierRM(RewardModel):
    """A Hugging Face sequence-classification checkpoint as a user-independent, raw, text-path reward model."""

    method = "hf_seq_cls"

    def __init__(self, featurizer: LogitFeaturizer):
        super().__init__(featurizer.name, "encoder_mean", 1, users=[])
        self.calibrated = False  # w multiplies the checkpoint's own logit
        self._featurizer = featurizer

    def user_index(self, users) -> torch.Tensor:
        """Every user reads the same (only) reward."""
        return torch.zeros(len(list(users)), dtype=torch.long)

    def _reward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x[..., 0]


def load_own_rm(rm, device=None) -> RewardModel:
    """``rm`` as a reward model: a :class:`RewardModel` as is, a folder saved by :meth:`RewardModel.save`, or a
    sequence-classification checkpoint (folder, hub id or mapped name) wrapped by :class:`SequenceClassifierRM`."""
    if isinstance(rm, RewardModel):
        return rm
    folder = Path(str(rm)).expanduser()
    if (folder / "model.pt").is_file() and (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if isinstance(cfg, dict) and "method" in cfg:
            from ..rewards import load_reward_model

            return load_reward_model(folder, device=device)
    model, tok = models.load_sequence_classifier(str(rm), device=device)
    return SequenceClassifierRM(LogitFeaturizer(model, tok, name=str(rm)))


def check_pairs(pairs, where: str = "pairs") -> list[dict]:
    """``pairs`` as a non-empty list of dicts with every field of :data:`PAIR_FIELDS` (strings, non-empty
    responses), or an error naming the record and field."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"{where}: no pairs")
    for i, p in enumerate(pairs, 1):
        if not isinstance(p, dict):
            raise TypeError(f"{where}: record {i} is a {type(p).__name__}, not an object")
        missing = [f for f in PAIR_FIELDS if f not in p]
        if missing:
            raise KeyError(f"{where}: record {i} ({p.get('pair_id', '?')!r}) has no field(s) {missing}")
        bad = [f for f in PAIR_FIELDS if not isinstance(p[f], str) or (f in ("chosen", "rejected") and not p[f].strip())]
        if bad:
            raise ValueError(f"{where}: record {i} ({p['pair_id']!r}): field(s) {bad} must be non-empty strings")
    return pairs


def evaluate_reward_model(rm, pairs, policy="smollm2-135m", ws=(0.0, 0.5, 1.0), k: int = 10,
                          definitions=("cumulative", "rgd_likelihood"), device=None, batch_size: int = 16) -> dict:
    """RM accuracy and policy accuracy at each ``w`` of the reward model ``rm`` on ``pairs``.

    ``rm``: see :func:`load_own_rm`. ``pairs``: dicts with ``prompt``, ``chosen``, ``rejected``, ``user``,
    ``pair_id`` (a reward model of this project must know every user). ``policy``: a model name, folder or hub
    id (:func:`lib.core.models.load_causal_lm`) or a loaded ``(model, tokenizer)``. ``k``: RGD candidates per step.

    Returns ``{"n_pairs", "rm_acc", "policy_acc"}``: ``policy_acc`` is a DataFrame with one row per
    (definition, normalise, w) and its accuracy.
    """
    from .selection import score_pairs

    pairs = check_pairs(pairs)
    model, tok = models.load_causal_lm(policy, device=device) if isinstance(policy, str) else policy
    reward_model = load_own_rm(rm, device=device)
    rm_rows, pol = score_pairs(model, tok, {"rm": reward_model}, pairs, ws, definitions=definitions, k=k,
                               batch_size=batch_size)
    acc = (pol.groupby(["definition", "normalise", "w"], sort=True)["correct"].mean()
           .rename("policy_acc").reset_index())
    return {"n_pairs": len(pairs), "rm_acc": float(rm_rows["rm_correct"].mean()), "policy_acc": acc}


def table(result: dict) -> pd.DataFrame:
    """The result of :func:`evaluate_reward_model` as one wide table: a row per (definition, normalise), a
    column per ``w``, and the RM accuracy beside it."""
    wide = result["policy_acc"].pivot_table(index=["definition", "normalise"], columns="w", values="policy_acc")
    wide.columns = [f"policy_acc@w={w:g}" for w in wide.columns]
    return wide.reset_index().assign(rm_acc=result["rm_acc"], n_pairs=result["n_pairs"])


def main(argv=None) -> int:
    """CLI: evaluate a reward model on a JSONL file of pairs and print the table."""
    from ..core.io import read_jsonl

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rm", required=True, help="a saved reward model folder or a sequence-classification checkpoint")
    ap.add_argument("--pairs", required=True, help="JSONL: one pair per line (pair_id, prompt, chosen, rejected, user)")
    ap.add_argument("--policy", default="smollm2-135m", help="policy model name, folder or hub id")
    ap.add_argument("--ws", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--device")
    a = ap.parse_args(argv)
    pairs = check_pairs(read_jsonl(a.pairs), where=a.pairs)
    res = evaluate_reward_model(a.rm, pairs, policy=a.policy, ws=tuple(a.ws), k=a.k, device=a.device)
    print(table(res).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
