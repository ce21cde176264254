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

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

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
    bar = tqdm(total=len(prompts) * n_sets, disable=not progress, desc=f"teacher-forced[{kind} x{len(rms)}]")
    for b in batches:
        pc = rgd.PromptCache(policy, [xs[i] for i in b], pad)
        rc = rgd.PromptCache(featurizer.model, [models.prompt_ids(featurizer.tok, prompts[i]) for i in b], pad) \
            if kind == "separate" else None
        for j in range(n_sets):
            yb = [ys[j][i] for i in b]
            T = [len(y) for y in yb]
            H = pc.append(yb)  # [N, Ty, d]
            prev = torch.cat([pc.h_last[:, None], H[:, :-1]], 1)  # the state that predicts y_t
            lps = [rgd.lm_logp(policy, prev[n, : T[n]]) for n in range(len(b))]  # [T, V]
            cands = [lp.topk(k, dim=-1) for lp in lps]
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
            rs = {key: rgd.head_rewards(rm, feats, uidx[key][rows]).double().cpu().numpy() for key, rm in rms.items()}
            for n, i in enumerate(b):
                yt = torch.tensor(yb[n], device=lps[n].device)
                hit = ci[n] == yt[:, None]
                shared = dict(logp=lps[n].gather(1, yt[:, None])[:, 0].double().cpu().numpy(),
                              cand_ids=ci[n].cpu().numpy(), cand_logp=cands[n][0].double().cpu().numpy(),
                              gold_idx=torch.where(hit.any(1), hit.long().argmax(1), -1).cpu().numpy())
                for key in rms:
                    r = rs[key][n]
                    out[j][key][i] = TeacherForced(r_gold=r[: T[n]], cand_r=r[T[n] : T[n] * (1 + k)].reshape(T[n], k),
                                                   **shared)
            bar.update(len(b))
    bar.close()
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


# ----------------------------------------------------------------------------- per-pair outcomes
def outcome(margin) -> np.ndarray:
    """1 where the margin is positive, 0.5 on a tie, 0 otherwise."""
    m = np.asarray(margin, dtype=float)
    return (m > 0) + 0.5 * (m == 0)


def split_halves(pair_ids, seed: int = 0, val_frac: float = 0.5) -> dict[str, str]:
    """Assign each pair to "val" (selects w) or "test" (reports), a fixed fraction by a seeded hash order.

    A pure function of the ids and the seed: every notebook, policy and reward model sees the same halves.
    """
    import hashlib

    ids = sorted(set(pair_ids), key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    n_val = int(len(ids) * val_frac)
    return {p: ("val" if i < n_val else "test") for i, p in enumerate(ids)}


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
    on the test half, with a bootstrap over models *and* pairs (:func:`lib.metrics.kendall_tau_pairs_ci`).

    ``policy_pairs`` holds one w per reward model (e.g. :func:`at_selected_w`, or one fixed w) and the
    columns ``by`` + definition, normalise. Reward models flagged ``degenerate`` (column, non-empty) are
    left out and counted in ``n_excluded``.
    """
    from . import metrics

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
