"""Policy accuracy: does the RGD scoring function rank the preferred response above the other?

The paper (arXiv 2512.23067) defines policy accuracy only in words ("whether the RGD scoring
function / RGD-adapted LLM ranks the preferred response above the dispreferred one"); we offer two
documented definitions, each raw or length-normalised, on top of one teacher-forced pass:

* ``"cumulative"``: ``S_w(y) = sum_t [log p(y_t | x, y_<t) + w * r(x, y_<=t; user)]``, the ARGS
  score (Khanov et al., ICLR 2024) accumulated along the response;
* ``"rgd_likelihood"``: ``S_w(y) = sum_t log softmax_{v in C_t}(log p(v) + w * r(x, y_<t + v))[y_t]``
  with ``C_t`` = the policy's top-k tokens plus the gold token y_t: the log-likelihood of y
  under the RGD-adapted (stochastic, T = 1) decoder.

``teacher_forced`` runs the policy and the reward once per response; ``policy_accuracy``
re-weights the stored arrays for any sweep of ``w`` without new forwards. Rewards of the k
candidates at every position come from one forward of ``T * k`` candidate tokens against the
cache of ``x + y`` (the tree mask of lib/rgd.py: candidate (t, i) sees ``x + y_<t`` and itself);
rewards of a text-path reward model (other tokenizer) re-encode the texts. Ties count one half.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from . import models, rgd


@dataclass
class TeacherForced:
    """One response, T tokens: arrays from the policy and the reward model (all float64 / int64)."""

    logp: np.ndarray  # [T] log p(y_t | x, y_<t)
    r_gold: np.ndarray  # [T] r(x, y_<=t)
    cand_ids: np.ndarray  # [T, k] the policy's top-k tokens at step t
    cand_logp: np.ndarray  # [T, k]
    cand_r: np.ndarray  # [T, k] r(x, y_<t + v)
    gold_idx: np.ndarray  # [T] index of y_t among the candidates, -1 if not in the top-k

    @property
    def gold_in_topk(self) -> np.ndarray:
        return self.gold_idx >= 0

    def __len__(self):
        return len(self.logp)


def _ids(tok, response) -> list[int]:
    return list(map(int, response)) if isinstance(response, (list, tuple)) else \
        tok(response, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def _prefill(model, x: list[int], y: list[int]):
    """One cached forward of ``x + y``; returns (cache, last_hidden_state [L + T, d])."""
    dev = next(model.parameters()).device
    S = len(x) + len(y)
    cache = DynamicCache(config=model.config)
    out = rgd.run_decoder(model, cache, input_ids=torch.tensor([x + y], device=dev),
                          attention_mask=torch.ones(1, S, dtype=torch.long, device=dev),
                          position_ids=torch.arange(S, device=dev)[None])
    return cache, out.last_hidden_state[0]


@torch.no_grad()
def _candidates(model, cache, L: int, T: int, cand: torch.Tensor, chunk: int) -> torch.Tensor:
    """Hidden states ``[T, k, d]`` of candidate v at step t, seeing ``x + y_<t``, all against one cache."""
    dev = next(model.parameters()).device
    k, S = cand.shape[1], L + T
    flat, t_of = cand.reshape(-1).to(dev), torch.arange(T, device=dev).repeat_interleave(k)
    hs = []
    for s in range(0, len(flat), chunk):
        tt = t_of[s : s + chunk]
        sees = torch.arange(S, device=dev)[None, :] < (L + tt)[:, None]
        hs.append(rgd.tree_forward(model, cache, flat[s : s + chunk][None], sees[None], (L + tt)[None])[0])
        rgd.keep_entry(cache, S, None)  # drop this chunk's entries again
    return torch.cat(hs).reshape(T, k, -1)


@torch.no_grad()
def teacher_forced(policy, tok, rm, prompts, responses, users, k: int = 10, policy_name: str | None = None,
                   featurizer=None, chunk_size: int = 2048, progress: bool = True) -> list[TeacherForced]:
    """Teacher-force each response through the policy and the RGD scoring (see module docstring).

    ``responses`` are texts (tokenised with the policy tokenizer, no special tokens) or token-id
    lists; ``prompts`` are user messages (formatted with ``models.prompt_ids``).
    """
    return teacher_forced_many(policy, tok, {"rm": rm}, prompts, responses, users, k, policy_name, featurizer,
                               chunk_size, progress)["rm"]


@torch.no_grad()
def teacher_forced_many(policy, tok, rms: dict, prompts, responses, users, k: int = 10, policy_name: str | None = None,
                        featurizer=None, chunk_size: int = 2048, progress: bool = True) -> dict[str, list[TeacherForced]]:
    """:func:`teacher_forced` for several reward models on one backbone, sharing every forward.

    The policy's log-probs and top-k candidates and the backbone features of the gold and candidate
    prefixes do not depend on the reward head, so they are computed once per response and each
    model only applies its head: scoring dozens of reward models costs about one.
    """
    if not (len(prompts) == len(responses) == len(users)):
        raise ValueError(f"prompts, responses and users differ in length: {len(prompts)}, {len(responses)}, {len(users)}")
    if not rms:
        raise ValueError("teacher_forced_many needs at least one reward model")
    dev = next(policy.parameters()).device
    name = policy_name or getattr(policy, "registry_name", None) or Path(str(getattr(policy, "name_or_path", ""))).name
    first = next(iter(rms.values()))
    if not first.shares_policy(name) and featurizer is None:
        featurizer = rgd.default_featurizer(first, dev)
    kind = rgd.reward_kind(first, policy, tok, name, featurizer)
    for key, rm in rms.items():
        if (rm.backbone, rm.feature_kind, rm.finetuned) != (first.backbone, first.feature_kind, first.finetuned):
            raise ValueError(f"reward model {key!r} has another backbone ({rm.backbone}, {rm.feature_kind}) than "
                             f"{first.backbone}: score each backbone separately")
    uidx = {key: rm.user_index(list(users)) for key, rm in rms.items()}
    out = {key: [] for key in rms}
    for i in tqdm(range(len(prompts)), disable=not progress, desc=f"teacher-forced[{kind} x{len(rms)}]"):
        x, y = models.prompt_ids(tok, prompts[i]), _ids(tok, responses[i])
        if not y:
            raise ValueError(f"example {i}: empty response (prompt {str(prompts[i])[:60]!r})")
        L, T = len(x), len(y)
        cache, H = _prefill(policy, x, y)
        lp = rgd.lm_logp(policy, H[L - 1 : L + T - 1])  # [T, V]: the distribution of y_t
        cl, ci = lp.topk(k, dim=-1)
        if kind == "shared":
            feats = torch.cat([H[L:], _candidates(policy, cache, L, T, ci, chunk_size).reshape(T * k, -1)])
        elif kind == "separate":
            xr = models.prompt_ids(featurizer.tok, prompts[i])
            rcache, HR = _prefill(featurizer.model, xr, y)
            feats = torch.cat([HR[len(xr):], _candidates(featurizer.model, rcache, len(xr), T, ci, chunk_size)
                               .reshape(T * k, -1)])
        else:
            texts = [tok.decode(y[: t + 1], skip_special_tokens=True) for t in range(T)]
            texts += [tok.decode(y[:t] + [int(v)], skip_special_tokens=True) for t in range(T) for v in ci[t].tolist()]
            feats = torch.cat([featurizer.features([prompts[i]] * len(texts[s : s + chunk_size]), texts[s : s + chunk_size])
                               for s in range(0, len(texts), chunk_size)])
        yt = torch.tensor(y, device=lp.device)
        hit = ci == yt[:, None]
        shared = dict(logp=lp.gather(1, yt[:, None])[:, 0].double().cpu().numpy(), cand_ids=ci.cpu().numpy(),
                      cand_logp=cl.double().cpu().numpy(),
                      gold_idx=torch.where(hit.any(1), hit.long().argmax(1), -1).cpu().numpy())
        for key, rm in rms.items():  # [r(gold prefixes), r(candidates)] from one head call
            r = rgd.head_rewards(rm, feats[None], uidx[key][i : i + 1])[0]
            out[key].append(TeacherForced(r_gold=r[:T].double().cpu().numpy(),
                                          cand_r=r[T:].reshape(T, k).double().cpu().numpy(), **shared))
    return out


def sequence_scores(tfs: list[TeacherForced], ws, definition: str = "cumulative", normalise: bool = False) -> np.ndarray:
    """Score ``S_w(y)`` of each teacher-forced response for each ``w``: array ``[N, len(ws)]``."""
    ws = np.asarray(ws, dtype=np.float64)
    out = np.empty((len(tfs), len(ws)))
    for n, tf in enumerate(tfs):
        if definition == "cumulative":
            s = tf.logp.sum() + ws * tf.r_gold.sum()
        elif definition == "rgd_likelihood":
            gold = tf.logp[None] + ws[:, None] * tf.r_gold[None]  # [W, T]
            other = tf.cand_logp[None] + ws[:, None, None] * tf.cand_r[None]  # [W, T, k]
            other = np.where((np.arange(tf.cand_ids.shape[1])[None] == tf.gold_idx[:, None])[None], -np.inf, other)
            allv = np.concatenate([gold[..., None], other], axis=-1)
            m = allv.max(-1, keepdims=True)
            lse = (m[..., 0] + np.log(np.exp(allv - m).sum(-1)))
            s = (gold - lse).sum(-1)
        else:
            raise ValueError(f"unknown definition {definition!r}; 'cumulative' or 'rgd_likelihood'")
        out[n] = s / len(tf) if normalise else s
    return out


def policy_accuracy(tf_chosen: list[TeacherForced], tf_rejected: list[TeacherForced], ws,
                    definition: str = "cumulative", normalise: bool = False) -> pd.DataFrame:
    """Fraction of pairs whose chosen response scores above the rejected one, per ``w`` (ties = 1/2)."""
    if len(tf_chosen) != len(tf_rejected) or not tf_chosen:
        raise ValueError(f"need aligned, non-empty pair lists: {len(tf_chosen)} chosen vs {len(tf_rejected)} rejected")
    margin = sequence_scores(tf_chosen, ws, definition, normalise) - sequence_scores(tf_rejected, ws, definition, normalise)
    acc = (margin > 0).mean(0) + 0.5 * (margin == 0).mean(0)
    return pd.DataFrame({"w": np.asarray(ws, dtype=float), "definition": definition, "normalise": normalise,
                         "accuracy": acc, "ties": (margin == 0).mean(0), "n_pairs": len(tf_chosen)})
