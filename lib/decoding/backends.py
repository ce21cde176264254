"""Reward-guided decoding backends (lib/decoding/rgd.py): how each path (plain, shared, separate, text, naive)
gets the next-token log-probs and the candidates' rewards, and :func:`make_backend`, which builds one.

A backend has ``needs_rewards``, ``next_logp() -> [B, V]``, ``rewards(cand [B, k], gen, done) -> [B, k]``
(when it needs rewards) and ``advance(tokens [B], j [B])`` (append the chosen tokens, candidate ``j``).
The rewards come from :class:`RowHeads`: each row's own reward head on features all rows share.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import models
from ..core.kvcache import keep_entry, lm_logp, prefill, step_one, tree_forward
from ..core.models import decoder_of


# ----------------------------------------------------------------------------- rewards
def head_rewards(rm, feats: torch.Tensor, uidx: torch.Tensor) -> torch.Tensor:
    """The decoding reward on features ``[B, c, d]`` with user rows ``[B]`` -> rewards ``[B, c]`` (float32).

    A reward model of lib/rewards guides with ``rm.guidance``: its reward standardised by the mean and
    sd of its rewards over its training prefixes (calibrated, so one ``w`` means the same strength for
    every method), or the raw ``head`` when loaded with ``calibrated=False``. An object with only a
    ``head`` (a hand-written reward in tests) is used raw.
    """
    B, c, d = feats.shape
    p = next(iter(rm.parameters()), None)
    dev = p.device if p is not None else feats.device
    fn = getattr(rm, "guidance", rm.head)
    r = fn(feats.reshape(B * c, d).float().to(dev), uidx.to(dev).repeat_interleave(c))
    return r.reshape(B, c).float().to(feats.device)


def _backbone_key(rm):
    return rm.backbone, rm.feature_kind, rm.finetuned


class RowHeads:
    """The reward of each row of a batch under its own reward model (or none), all on one backbone.

    ``rms`` is one reward model for every row or a list with one entry per row (``None``: no
    reward, for rows decoded with ``w = 0`` beside reward-guided ones). Rows whose models share a
    backbone share every forward (the policy's in path a, the reward backbone's in b and c); each
    row then applies its own head: one head call per distinct model.
    """

    def __init__(self, rms, users, B: int):
        rms = list(rms) if isinstance(rms, (list, tuple)) else [rms] * B
        if len(rms) != B:
            raise ValueError(f"need one reward model (or None) per prompt: got {len(rms)} for {B} prompts")
        if isinstance(users, str):
            users = [users] * B
        models_ = [m for m in rms if m is not None]
        if not models_:
            raise ValueError("RowHeads needs at least one reward model")
        if users is None or len(users) != B:
            raise ValueError(f"need one user per prompt: got {None if users is None else len(users)} users for {B} prompts")
        self.first = models_[0]
        for m in models_:
            if _backbone_key(m) != _backbone_key(self.first):
                raise ValueError(f"rows of one batch must share the reward backbone: {m.method} on {m.backbone} "
                                 f"beside {self.first.method} on {self.first.backbone}")
        self.rms, rows = [], {}
        for b, m in enumerate(rms):
            if m is not None:
                if id(m) not in rows:
                    self.rms.append(m)
                rows.setdefault(id(m), []).append(b)
        self.gid = torch.full((B,), -1, dtype=torch.long)
        self.uidx = torch.zeros(B, dtype=torch.long)
        for g, m in enumerate(self.rms):
            r = rows[id(m)]
            self.gid[r] = g
            self.uidx[r] = m.user_index([users[b] for b in r])

    def __call__(self, feats: torch.Tensor, rows=None) -> torch.Tensor:
        """Rewards ``[n, c]`` of features ``[n, c, d]`` of the batch rows ``rows`` (default: all, in order)."""
        rows = torch.arange(len(self.gid)) if rows is None else torch.as_tensor(rows, dtype=torch.long).cpu()
        gid = self.gid[rows]
        if len(self.rms) == 1 and bool((gid == 0).all()):  # the common case: one model, one head call
            return head_rewards(self.rms[0], feats, self.uidx[rows])
        out = torch.zeros(feats.shape[:2], dtype=torch.float32, device=feats.device)
        for g, m in enumerate(self.rms):
            p = (gid == g).nonzero()[:, 0]
            if len(p):
                out[p.to(feats.device)] = head_rewards(m, feats[p.to(feats.device)], self.uidx[rows][p])
        return out


# ----------------------------------------------------------------------------- backends
class _Plain:
    """Policy only: prefix cache, one token per step."""

    needs_rewards = False

    def __init__(self, policy, ids, mask):
        self.policy, self.mask = policy, mask
        self.pos = mask.sum(1)
        h, self.cache = prefill(policy, ids, mask)
        self.logp = lm_logp(policy, h)

    def next_logp(self):
        return self.logp

    def advance(self, tokens, j):
        self.mask = F.pad(self.mask, (0, 1), value=1)
        self.logp = lm_logp(self.policy, step_one(self.policy, self.cache, tokens, self.mask, self.pos))
        self.pos = self.pos + 1


class _Shared(_Plain):
    """Path a: the candidates' policy forward gives rewards, next-step logits and the cache."""

    needs_rewards = True

    def __init__(self, policy, ids, mask, heads, chunk):
        super().__init__(policy, ids, mask)
        self.heads, self.chunk = heads, chunk

    def rewards(self, cand, gen, done):
        B, k = cand.shape
        S, c = self.mask.shape[1], max(1, self.chunk // B)
        hs = []
        for s in range(0, k, c):  # chunks of candidate columns, each against the same prefix
            hs.append(tree_forward(self.policy, self.cache, cand[:, s : s + c], self.mask, self.pos))
            if k > c:
                keep_entry(self.cache, S, None)
        self.h = torch.cat(hs, 1)
        self.chunked = k > c
        return self.heads(self.h)

    def advance(self, tokens, j):
        if self.chunked:  # the chosen entry was dropped with its chunk: append it again
            return super().advance(tokens, j)
        keep_entry(self.cache, self.mask.shape[1], j)
        self.mask = F.pad(self.mask, (0, 1), value=1)
        self.logp = lm_logp(self.policy, self.h[torch.arange(len(j)), j])
        self.pos = self.pos + 1


class _Separate(_Plain):
    """Path b: a reward backbone with the policy's tokenizer and its own prefix cache."""

    needs_rewards = True

    def __init__(self, policy, ids, mask, heads, chunk, rm_model, rm_ids, rm_mask):
        super().__init__(policy, ids, mask)
        self.heads, self.chunk, self.rm_model, self.rm_mask = heads, chunk, rm_model, rm_mask
        self.rm_pos = rm_mask.sum(1)
        _, self.rm_cache = prefill(rm_model, rm_ids, rm_mask)

    def rewards(self, cand, gen, done):
        B, k = cand.shape
        S, c = self.rm_mask.shape[1], max(1, self.chunk // B)
        cand = cand.to(self.rm_mask.device)
        hs = []
        for s in range(0, k, c):
            hs.append(tree_forward(self.rm_model, self.rm_cache, cand[:, s : s + c], self.rm_mask, self.rm_pos))
            if k > c:
                keep_entry(self.rm_cache, S, None)
        self.chunked = k > c
        return self.heads(torch.cat(hs, 1))

    def advance(self, tokens, j):
        tokens_rm = tokens.to(self.rm_mask.device)
        if self.chunked:
            self.rm_mask = F.pad(self.rm_mask, (0, 1), value=1)
            step_one(self.rm_model, self.rm_cache, tokens_rm, self.rm_mask, self.rm_pos)
        else:
            keep_entry(self.rm_cache, self.rm_mask.shape[1], j)
            self.rm_mask = F.pad(self.rm_mask, (0, 1), value=1)
        self.rm_pos = self.rm_pos + 1
        super().advance(tokens, j)


def text_rewards(heads, featurizer, tok, prompts, gen, cand, done, chunk):
    """Path c / naive: score ``(prompt, decoded prefix + candidate)`` texts with the featurizer."""
    B, k = cand.shape
    rows = [b for b in range(B) if not done[b]]
    P = [prompts[b] for b in rows for _ in range(k)]
    R = [tok.decode(gen[b] + [int(v)], skip_special_tokens=True) for b in rows for v in cand[b].tolist()]
    r = torch.zeros(B, k, device=cand.device)
    if rows:
        feats = torch.cat([featurizer.features(P[s : s + chunk], R[s : s + chunk]) for s in range(0, len(P), chunk)])
        r[rows] = heads(feats.reshape(len(rows), k, -1), rows).to(cand.device)
    return r


class _Text(_Plain):
    """Path c: policy cache for logits; rewards re-encoded as text by another backbone."""

    needs_rewards = True

    def __init__(self, policy, ids, mask, heads, chunk, featurizer, tok, prompts):
        super().__init__(policy, ids, mask)
        self.heads, self.chunk, self.feat, self.tok, self.prompts = heads, chunk, featurizer, tok, prompts

    def rewards(self, cand, gen, done):
        return text_rewards(self.heads, self.feat, self.tok, self.prompts, gen, cand, done.tolist(), self.chunk)


@torch.no_grad()
def uncached_lm_rewards(heads, model, seqs: list[list[int]], cand, done, chunk):
    """Naive reward: every ``seq + [candidate]`` forwarded from scratch (no padding: same length per row).

    Returns rewards ``[B, k]`` and the candidates' last hidden states ``[B, k, d]`` (zeros for done rows).
    """
    B, k = cand.shape
    dev = next(model.parameters()).device
    r = torch.zeros(B, k, device=cand.device)
    hs = torch.zeros(B, k, model.config.hidden_size, device=dev, dtype=next(model.parameters()).dtype)
    for b in range(B):
        if done[b]:
            continue
        full = torch.cat([torch.tensor(seqs[b], dtype=torch.long, device=dev).expand(k, -1),
                          cand[b].to(dev)[:, None]], dim=1)
        c = max(1, chunk // full.shape[1])
        hs[b] = torch.cat([decoder_of(model)(input_ids=full[s : s + c], use_cache=False).last_hidden_state[:, -1]
                           for s in range(0, k, c)])
        r[b] = heads(hs[b][None], [b])[0].to(cand.device)
    return r, hs


class _Naive:
    """Reference: nothing cached. Each step re-encodes every candidate sequence ``x + y_<t + v`` from
    scratch for its reward; the policy's next-token logits come from an uncached forward of the prefix
    (for a shared backbone: from the chosen candidate's uncached forward, which is that prefix)."""

    needs_rewards = True

    def __init__(self, policy, prompt_ids, heads, chunk, kind, featurizer, tok, prompts, rm_prompt_ids):
        self.policy, self.prompt_ids, self.heads, self.chunk, self.kind = policy, prompt_ids, heads, chunk, kind
        self.rm_model, self.rm_prompt_ids = getattr(featurizer, "model", None), rm_prompt_ids
        self.feat, self.tok, self.prompts = featurizer, tok, prompts
        self.gen = [[] for _ in prompt_ids]
        self.h_next = None  # [B, d] hidden of the current prefix, when already computed

    @torch.no_grad()
    def next_logp(self):
        if self.h_next is not None:
            return lm_logp(self.policy, self.h_next)
        dev = next(self.policy.parameters()).device
        h = [decoder_of(self.policy)(input_ids=torch.tensor([p + g], device=dev), use_cache=False).last_hidden_state[0, -1]
             for p, g in zip(self.prompt_ids, self.gen)]
        return lm_logp(self.policy, torch.stack(h))

    def rewards(self, cand, gen, done):
        self.hc = None
        if self.kind == "shared":
            r, self.hc = uncached_lm_rewards(self.heads, self.policy, [p + g for p, g in zip(self.prompt_ids, gen)],
                                             cand, done.tolist(), self.chunk)
            return r
        if self.kind == "separate":
            return uncached_lm_rewards(self.heads, self.rm_model, [p + g for p, g in zip(self.rm_prompt_ids, gen)],
                                       cand, done.tolist(), self.chunk)[0]
        return text_rewards(self.heads, self.feat, self.tok, self.prompts, gen, cand, done.tolist(), self.chunk)

    def advance(self, tokens, j):
        for b, t in enumerate(tokens.tolist()):
            self.gen[b].append(t)
        self.h_next = None if self.hc is None else self.hc[torch.arange(len(j)), j.to(self.hc.device)]


# ----------------------------------------------------------------------------- the factory
BACKENDS = {"plain": _Plain, "shared": _Shared, "separate": _Separate, "text": _Text, "naive": _Naive}


def make_backend(path: str, kind: str | None, policy, tok, prompt_ids: list[list[int]], texts: list[str] | None,
                 heads: RowHeads | None, featurizer, chunk: int):
    """The backend decoding ``prompt_ids`` on ``path`` (one of :data:`BACKENDS`) for a reward model of
    decoding path ``kind`` (None: no reward model). ``texts`` are the user messages (None when the
    prompts were token ids), ``featurizer`` the reward backbone of kinds separate and text, ``chunk``
    the most candidate tokens (or texts) per forward. A separate backbone reads the messages through its
    own tokenizer's prompt format (the token ids themselves when there are no messages)."""
    if path not in BACKENDS:
        raise ValueError(f"unknown path {path!r}; one of {tuple(BACKENDS)}")
    if kind == "text" and path in ("text", "naive") and texts is None:
        raise ValueError("the text path needs prompts as strings, not token ids")
    rm_prompt_ids = None
    if kind == "separate" and path in ("separate", "naive"):
        rm_prompt_ids = [models.prompt_ids(featurizer.tok, t) for t in texts] if texts else prompt_ids
    if path == "naive":
        return _Naive(policy, prompt_ids, heads, chunk, kind, featurizer, tok, texts, rm_prompt_ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids, mask = models.pad_batch(prompt_ids, pad, "left", next(policy.parameters()).device)
    if path == "plain":
        return _Plain(policy, ids, mask)
    if path == "shared":
        return _Shared(policy, ids, mask, heads, chunk)
    if path == "text":
        return _Text(policy, ids, mask, heads, chunk, featurizer, tok, texts)
    rm_ids, rm_mask = models.pad_batch(rm_prompt_ids, pad, "left", next(featurizer.model.parameters()).device)
    return _Separate(policy, ids, mask, heads, chunk, featurizer.model, rm_ids, rm_mask)
