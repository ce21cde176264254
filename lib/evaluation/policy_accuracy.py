"""Policy accuracy: does the RGD scoring function rank the preferred response above the other?

The paper (arXiv 2512.23067) defines policy accuracy only in words ("whether the RGD scoring
function / RGD-adapted LLM ranks the preferred response above the dispreferred one"); we offer three
documented definitions, each raw or length-normalised (divided by T), on top of one teacher-forced pass:

* ``"cumulative"``: ``S_w(y) = sum_t [log p(y_t | x, y_<t) + w * r(x, y_<=t; user)]``, the ARGS
  score (Khanov et al., ICLR 2024) accumulated along the response;
* ``"rgd_likelihood"`` (faithful, the default likelihood): ``S_w(y) = sum_t log q_w(y_t)`` with
  ``q_w = softmax_{v in C_t}(log p(v) + w * r(x, y_<t + v))`` over ``C_t`` = the policy's top-k tokens
  only, RGD's actual support: the log-likelihood of y under the RGD-adapted (stochastic, T = 1)
  decoder. A response with a token outside the top-k (:func:`out_of_support`) cannot be emitted and
  scores ``-inf`` (likelihood 0); two such responses tie (:func:`score_margin`);
* ``"rgd_likelihood_smoothed"`` (option): the same with ``C_t`` = top-k plus the gold token y_t, so
  every response gets a finite score (tokens RGD can never emit get a finite probability).

The measured steering strength of ``w`` is :func:`steering_kl` (KL of the RGD next-token distribution
from the base policy's over the same candidates) and :func:`kl_to_base` (from the full base policy);
:func:`step_scale` is the within-step spread of candidate rewards that puts reward models of different
scales on one ``w`` axis.

``teacher_forced`` runs the policy and the reward once per response; ``policy_accuracy``
re-weights the stored arrays for any sweep of ``w`` without new forwards. Rewards of the k
candidates at every position come from one forward of ``T * k`` candidate tokens against the
cache of ``x + y`` (the tree mask of lib/core/kvcache.py: candidate (t, i) sees ``x + y_<t`` and itself);
rewards of a text-path reward model (other tokenizer) re-encode the texts. Ties count one half.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp

from ..core import models
from ..core.kvcache import PromptCache, lm_logp
from ..core.progress import bar
from ..decoding.backends import head_rewards


@dataclass
class TeacherForced:
    """One response, T tokens: arrays from the policy and the reward model (all float64 / int64)."""

    logp: np.ndarray  # [T] log p(y_t | x, y_<t)
    r_gold: np.ndarray  # [T] r(x, y_<=t)
    cand_ids: np.ndarray  # [T, k] the policy's top-k tokens at step t
    cand_logp: np.ndarray  # [T, k]
    cand_r: np.ndarray  # [T, k] r(x, y_<t + v)
    gold_idx: np.ndarray  # [T] index of y_t among the candidates, -1 if not in the top-k
    path: str = ""  # the RGD path the rewards were computed on: "shared" (a), "separate" (b) or "text" (c)

    @property
    def gold_in_topk(self) -> np.ndarray:
        return self.gold_idx >= 0

    def __len__(self):
        return len(self.logp)


DEFINITIONS = ("cumulative", "rgd_likelihood", "rgd_likelihood_smoothed")  # sequence_scores (module docstring)

def _ids(tok, response) -> list[int]:
    return list(map(int, response)) if isinstance(response, (list, tuple)) else \
        tok(response, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def teacher_forced(policy, tok, rm, prompts, responses, users, k: int = 10, policy_name: str | None = None,
                   featurizer=None, chunk_size: int = 4096, batch_size: int = 16,
                   progress: bool = True, eos: bool = True) -> list[TeacherForced]:
    """Teacher-force each response through the policy and the RGD scoring (see module docstring).

    ``responses`` are texts (tokenised with the policy tokenizer, no special tokens) or token-id
    lists; ``prompts`` are user messages (formatted with ``models.prompt_ids``) or, for a reward
    model on the policy's own states, formatted token-id lists.
    """
    return teacher_forced_many(policy, tok, {"rm": rm}, prompts, responses, users, k, policy_name, featurizer,
                               chunk_size, batch_size, progress, eos)["rm"]


def length_batches(lengths: list, batch_size: int) -> list[list[int]]:
    """Indices in fixed batches of similar length (longest first; ties by index): little padding, same
    batches for the same input. A length may be a tuple (compared in order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    neg = [tuple(-v for v in x) if isinstance(x, tuple) else -x for x in lengths]
    order = sorted(range(len(lengths)), key=lambda i: (neg[i], i))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def teacher_forced_many(policy, tok, rms: dict, prompts, responses, users, k: int = 10, policy_name: str | None = None,
                        featurizer=None, chunk_size: int = 4096, batch_size: int = 16,
                        progress: bool = True, eos: bool = True) -> dict[str, list[TeacherForced]]:
    """:func:`teacher_forced` for several reward models on one backbone, sharing every forward.

    The policy's log-probs and top-k candidates and the backbone features of the gold and candidate
    prefixes do not depend on the reward head, so they are computed once per response and each
    model only applies its head: scoring dozens of reward models costs about one.
    """
    return teacher_forced_sets(policy, tok, rms, prompts, [responses], users, k, policy_name, featurizer, chunk_size,
                               batch_size, progress, eos)[0]


def _logp_topk(policy, prev: torch.Tensor, T: list[int], ys: list[list[int]], k: int, max_elems: int = 1 << 26):
    """Per row n: ``log p(y_t | ...)`` ``[T_n]`` and the top-k ``(log-probs, ids)`` ``[T_n, k]`` from the states
    ``prev[n, :T_n]`` that predict each token. The valid states of all rows go through the output layer together
    (one weight read per batch instead of per row: the output layer of a 262k-token vocabulary is most of a small
    policy), at most ``max_elems`` logits at a time."""
    flat = torch.cat([prev[n, : T[n]] for n in range(len(T))])  # [sum T, d]
    gold = torch.tensor([t for y in ys for t in y], device=flat.device)
    V = policy.get_output_embeddings().weight.shape[0]
    step = max(1, max_elems // V)
    lp_gold, cl, ci = [], [], []
    for s in range(0, len(flat), step):
        lp = lm_logp(policy, flat[s : s + step])  # [rows, V]
        lp_gold.append(lp.gather(1, gold[s : s + step, None])[:, 0])
        c = lp.topk(k, dim=-1)
        cl.append(c[0])
        ci.append(c[1])
    lp_gold, cl, ci = torch.cat(lp_gold), torch.cat(cl), torch.cat(ci)
    off = np.cumsum([0] + list(T))
    return ([lp_gold[off[n] : off[n + 1]] for n in range(len(T))],
            [(cl[off[n] : off[n + 1]], ci[off[n] : off[n + 1]]) for n in range(len(T))])


@torch.no_grad()
def teacher_forced_sets(policy, tok, rms: dict, prompts, response_sets, users, k: int = 10,
                        policy_name: str | None = None, featurizer=None, chunk_size: int = 4096, batch_size: int = 16,
                        progress: bool = True, eos: bool = True) -> list[dict[str, list[TeacherForced]]]:
    """:func:`teacher_forced_many` for several responses per prompt (e.g. ``[chosen, rejected]``).

    Prompts go through the model ``batch_size`` at a time (similar lengths together, left padding)
    and each is forwarded once: its cache takes one set of (right-padded) responses, then that set's
    candidates in one tree forward (chunks of ``chunk_size`` tokens), then is cut back for the next
    set. Results equal one response at a time up to float rounding (tested). ``eos`` appends the end
    token to every response (its log-prob and its reward, the full-response reward the RM was trained
    on, are part of the score, as when decoding stops). Rewards are the models' decoding rewards
    (``rm.guidance``: calibrated unless the model was loaded with ``calibrated=False``). Returns, per
    set, ``{rm key: [TeacherForced per prompt]}``.
    """
    n_sets = len(response_sets)
    if not all(len(prompts) == len(rs) == len(users) for rs in response_sets):
        raise ValueError(f"prompts, responses and users differ in length: {len(prompts)}, "
                         f"{[len(rs) for rs in response_sets]}, {len(users)}")
    if not rms:
        raise ValueError("teacher_forced_many needs at least one reward model")
    dev = next(policy.parameters()).device
    first = next(iter(rms.values()))
    kind, featurizer = first.decoding_path(models.registry_name(policy, policy_name), tok, featurizer, dev)
    for key, rm in rms.items():
        if (rm.backbone, rm.feature_kind, rm.finetuned) != (first.backbone, first.feature_kind, first.finetuned):
            raise ValueError(f"reward model {key!r} has another backbone ({rm.backbone}, {rm.feature_kind}) than "
                             f"{first.backbone}: score each backbone separately")
    uidx = {key: rm.user_index(list(users)) for key, rm in rms.items()}
    xs = [list(map(int, p)) if isinstance(p, (list, tuple)) else models.prompt_ids(tok, p) for p in prompts]
    ys = [[_ids(tok, r) for r in rs] for rs in response_sets]
    for j in range(n_sets):
        for i, y in enumerate(ys[j]):
            if not y:
                raise ValueError(f"example {i}: empty response (prompt {str(prompts[i])[:60]!r})")
    if eos:  # the end token is part of every response, as in decoding (its reward: the full-response state)
        if tok.eos_token_id is None:
            raise ValueError("eos=True needs a tokenizer with an eos_token_id")
        ys = [[y if y[-1] == tok.eos_token_id else y + [tok.eos_token_id] for y in rs] for rs in ys]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out = [{key: [None] * len(prompts) for key in rms} for _ in range(n_sets)]
    # similar response lengths together (the T * k candidate columns dominate), then similar prompts
    batches = length_batches([(max(len(ys[j][i]) for j in range(n_sets)), len(x)) for i, x in enumerate(xs)],
                             batch_size)
    pbar = bar(total=len(prompts) * n_sets, progress=progress, desc=f"teacher-forced[{kind} x{len(rms)}]")
    for b in batches:
        pc = PromptCache(policy, [xs[i] for i in b], pad)
        rc = PromptCache(featurizer.model, [models.prompt_ids(featurizer.tok, prompts[i]) for i in b], pad) \
            if kind == "separate" else None
        for j in range(n_sets):
            yb = [ys[j][i] for i in b]
            T = [len(y) for y in yb]
            H = pc.append(yb)  # [N, Ty, d]
            prev = torch.cat([pc.h_last[:, None], H[:, :-1]], 1)  # the state that predicts y_t
            lps, cands = _logp_topk(policy, prev, T, yb, k)
            ci = [c[1] for c in cands]
            if kind == "shared":
                gold, cand_h = [H[n, : T[n]] for n in range(len(b))], pc.candidates(T, ci, chunk_size)
            elif kind == "separate":
                HR = rc.append(yb)
                gold, cand_h = [HR[n, : T[n]] for n in range(len(b))], rc.candidates(T, ci, chunk_size)
            else:
                P, R = [], []
                for n, i in enumerate(b):
                    y = yb[n]
                    R += [tok.decode(y[: t + 1], skip_special_tokens=True) for t in range(T[n])]
                    R += [tok.decode(y[:t] + [int(v)], skip_special_tokens=True)
                          for t in range(T[n]) for v in ci[n][t].tolist()]
                    P += [prompts[i]] * (T[n] * (1 + k))
                F_ = torch.cat([featurizer.features(P[s : s + chunk_size], R[s : s + chunk_size])
                                for s in range(0, len(P), chunk_size)])
                off = np.cumsum([0] + [t * (1 + k) for t in T])
                gold = [F_[off[n] : off[n] + T[n]] for n in range(len(b))]
                cand_h = [F_[off[n] + T[n] : off[n + 1]] for n in range(len(b))]
            # one head call per reward model for the whole batch: [gold prefixes | candidates] of every row
            W = max(T) * (1 + k)
            feats = torch.zeros(len(b), W, gold[0].shape[-1], dtype=gold[0].dtype, device=gold[0].device)
            for n in range(len(b)):
                feats[n, : T[n]] = gold[n]
                feats[n, T[n] : T[n] * (1 + k)] = cand_h[n][: T[n] * k].to(feats.device)
            rows = torch.tensor(b)
            rs = {key: head_rewards(rm, feats, uidx[key][rows]).double().cpu().numpy() for key, rm in rms.items()}
            for n, i in enumerate(b):
                yt = torch.tensor(yb[n], device=ci[n].device)
                hit = ci[n] == yt[:, None]
                shared = dict(logp=lps[n].double().cpu().numpy(),
                              cand_ids=ci[n].cpu().numpy(), cand_logp=cands[n][0].double().cpu().numpy(),
                              gold_idx=torch.where(hit.any(1), hit.long().argmax(1), -1).cpu().numpy())
                for key in rms:
                    r = rs[key][n]
                    out[j][key][i] = TeacherForced(r_gold=r[: T[n]], cand_r=r[T[n] : T[n] * (1 + k)].reshape(T[n], k),
                                                   path=kind, **shared)
            pbar.update(len(b))
    pbar.close()
    return out


def sequence_scores(tfs: list[TeacherForced], ws, definition: str = "cumulative", normalise: bool = False) -> np.ndarray:
    """Score ``S_w(y)`` of each teacher-forced response for each ``w``: array ``[N, len(ws)]``.

    Under ``"rgd_likelihood"`` a response with a token outside the top-k scores ``-inf``: compare scores
    with :func:`score_margin`, not by subtraction (``-inf - -inf`` is NaN).
    """
    if definition not in DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r}; one of {DEFINITIONS}")
    ws = np.asarray(ws, dtype=np.float64)
    out = np.empty((len(tfs), len(ws)))
    for n, tf in enumerate(tfs):
        if definition == "cumulative":
            s = tf.logp.sum() + ws * tf.r_gold.sum()
        elif definition == "rgd_likelihood":  # support = the top-k only
            z = tf.cand_logp[None] + ws[:, None, None] * tf.cand_r[None]  # [W, T, k]
            zg = np.take_along_axis(z, np.maximum(tf.gold_idx, 0)[None, :, None], -1)[..., 0]  # [W, T]
            s = np.where(tf.gold_in_topk[None], zg - logsumexp(z, -1), -np.inf).sum(-1)
        else:  # rgd_likelihood_smoothed: support = the top-k plus the gold token
            gold = tf.logp[None] + ws[:, None] * tf.r_gold[None]  # [W, T]
            other = tf.cand_logp[None] + ws[:, None, None] * tf.cand_r[None]  # [W, T, k]
            other = np.where((np.arange(tf.cand_ids.shape[1])[None] == tf.gold_idx[:, None])[None], -np.inf, other)
            allv = np.concatenate([gold[..., None], other], axis=-1)
            m = allv.max(-1, keepdims=True)
            lse = (m[..., 0] + np.log(np.exp(allv - m).sum(-1)))
            s = (gold - lse).sum(-1)
        out[n] = s / len(tf) if normalise else s
    return out


def out_of_support(tfs: list[TeacherForced]) -> np.ndarray:
    """bool ``[N]``: the response has a token outside the policy's top-k (RGD cannot emit it)."""
    return np.array([bool((tf.gold_idx < 0).any()) for tf in tfs], dtype=bool)


def score_margin(s_chosen, s_rejected) -> np.ndarray:
    """``s_chosen - s_rejected``, with 0 (a tie) where both are the same infinity (two responses RGD cannot
    emit, both ``-inf``) instead of NaN; ``+inf`` / ``-inf`` where only one is ``-inf``."""
    a, b = np.asarray(s_chosen, dtype=float), np.asarray(s_rejected, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(a) & (a == b), 0.0, a - b)


def policy_accuracy(tf_chosen: list[TeacherForced], tf_rejected: list[TeacherForced], ws,
                    definition: str = "cumulative", normalise: bool = False) -> pd.DataFrame:
    """Fraction of pairs whose chosen response scores above the rejected one, per ``w`` (ties = 1/2;
    both responses out of the RGD support is a tie, one of them is a loss for it)."""
    if len(tf_chosen) != len(tf_rejected) or not tf_chosen:
        raise ValueError(f"need aligned, non-empty pair lists: {len(tf_chosen)} chosen vs {len(tf_rejected)} rejected")
    margin = score_margin(sequence_scores(tf_chosen, ws, definition, normalise),
                          sequence_scores(tf_rejected, ws, definition, normalise))
    return pd.DataFrame({"w": np.asarray(ws, dtype=float), "definition": definition, "normalise": normalise,
                         "accuracy": outcome(margin).mean(0), "ties": (margin == 0).mean(0),
                         "n_pairs": len(tf_chosen)})


# ----------------------------------------------------------------------------- per-pair outcomes
def outcome(margin) -> np.ndarray:
    """1 where the margin is positive (``+inf`` included), 0.5 on a tie, 0 otherwise. A NaN margin (``-inf - -inf``:
    both responses out of the RGD support) counts as a tie; :func:`score_margin` gives 0 there instead."""
    m = np.asarray(margin, dtype=float)
    return (m > 0) + 0.5 * ((m == 0) | np.isnan(m))


# ----------------------------------------------------------------------------- measured steering strength
def _rgd_logq(tf: TeacherForced, ws: np.ndarray, scale: float) -> np.ndarray:
    """``log q_w`` over the top-k at every step: ``[W, T, k]``."""
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, not {scale}")
    z = tf.cand_logp[None] + (ws[:, None, None] / scale) * tf.cand_r[None]
    return z - logsumexp(z, -1, keepdims=True)


def _kl(logq: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """``sum_k q (log q - log p)`` over the last axis, 0 where q = 0."""
    with np.errstate(invalid="ignore"):
        return np.maximum(np.where(logq > -np.inf, np.exp(logq) * (logq - logp), 0.0).sum(-1), 0.0)


def steering_kl(tfs: list[TeacherForced], ws, scale: float = 1.0) -> np.ndarray:
    """Measured steering strength: ``[N, len(ws)]``, for each response the mean over its T teacher-forced
    prefixes ``x + y_<t`` of ``KL(q_w || q_0)``, where ``q_w = softmax_k(cand_logp + (w / scale) * cand_r)`` is
    RGD's next-token distribution over the policy's top-k and ``q_0 = softmax_k(cand_logp)`` the base policy
    restricted to the same candidates (RGD's support). 0 at ``w = 0``; the top-k truncation, common to every
    reward model, does not enter (:func:`kl_to_base` includes it)."""
    ws = np.asarray(ws, dtype=np.float64)
    out = np.empty((len(tfs), len(ws)))
    for n, tf in enumerate(tfs):
        l0 = tf.cand_logp - logsumexp(tf.cand_logp, -1, keepdims=True)
        out[n] = _kl(_rgd_logq(tf, ws, scale), l0[None]).mean(-1)
    return out


def kl_to_base(tfs: list[TeacherForced], ws, scale: float = 1.0) -> np.ndarray:
    """``[N, len(ws)]``: for each response the mean over its T teacher-forced prefixes of ``KL(q_w || p)``
    against the base policy's full-vocabulary distribution (``log p = cand_logp``; finite since q's support is
    the top-k). Equals :func:`steering_kl` plus the truncation term ``mean_t -log sum_k p``."""
    ws = np.asarray(ws, dtype=np.float64)
    out = np.empty((len(tfs), len(ws)))
    for n, tf in enumerate(tfs):
        out[n] = _kl(_rgd_logq(tf, ws, scale), tf.cand_logp[None]).mean(-1)
    return out


def step_scale(tfs: list[TeacherForced]) -> float:
    """Within-step spread of candidate rewards, what RGD's softmax sees: the mean over all steps of all
    responses of the standard deviation (ddof=0) of the k candidate rewards. Dividing ``w`` by it (step
    calibration) makes one ``w`` mean about the same KL for reward models whose reward scales differ."""
    if not tfs:
        raise ValueError("step_scale needs at least one teacher-forced response")
    r = np.concatenate([tf.cand_r.reshape(len(tf), -1) for tf in tfs])  # [sum T, k]
    s = float(r.std(-1).mean())
    if not np.isfinite(s):
        raise ValueError(f"candidate rewards are not finite (spread {s}): cannot calibrate")
    if s <= 1e-12 * float(np.abs(r).mean()):  # 0 <= 0 when the rewards are all 0
        raise ValueError("the reward is constant across candidates (no within-step spread): cannot calibrate")
    return s
