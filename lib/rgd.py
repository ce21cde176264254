"""Reward-guided decoding (ARGS, Khanov et al., ICLR 2024), batched, cached and multi-user.

At each step the policy proposes its top-``k`` next tokens ``v``; each is scored

    score(v) = log p(v | x, y_<t) + w * r(x, y_<t + v; user)

and the next token is ``argmax score`` (greedy) or a draw from ``softmax(score / T)``.
Log-probs and logits differ by a per-step constant, so greedy choices equal ARGS' logit form.
With ``w = 0`` (or no reward model) decoding is plain greedy decoding, token for token.

The reward ``r = rm.guidance(features, rm.user_index(users))`` (lib/rewards.py: the head's reward,
standardised by the model's calibration unless it was loaded with ``calibrated=False``) is computed on
one of four *paths*, chosen from the reward model (``path=`` overrides it, for tests and benchmarks):

* ``"shared"`` (a): the head reads the policy's own ``last_hidden_state``. One policy forward of
  the ``k`` candidates against the single prefix cache, with a 4D attention mask in which each
  candidate sees the prefix and itself (tree verification, as in speculative decoding), yields
  every candidate's feature; the chosen candidate's KV entry is kept, and its hidden state gives
  the next step's logits, so a step costs exactly one k-token forward.
* ``"separate"`` (b): a reward backbone with the policy's tokenizer but its own weights keeps its
  own prefix cache; the ``k`` candidates are scored in one forward against it (same 4D mask, no k
  copies), the chosen entry is kept. A step costs one policy token + one k-token RM forward.
* ``"text"`` (c): a reward backbone with another tokenizer (MiniLM) re-encodes
  ``(prompt, decoded prefix + candidate)`` as text, ``B * k`` pairs per step, batched.
* ``"naive"``: the reference. No cache anywhere: each step re-encodes the prefix for the policy's
  logits and every candidate sequence from scratch for its reward (what ARGS does, minus its
  k-fold cache copies). Cached paths are tested against it token for token.

Rows are left-padded, each has its own user, stops on its own at EOS (``models.eos_ids``), and
finished rows are carried along with pad tokens. The cached paths need ``DynamicCache`` layers they
can truncate: full attention (Llama, Qwen2, SmolLM2), and sliding-window layers (Gemma 3) as long as
prompt + generated tokens + candidates stay inside the window (beyond it a clear error says to use
``path="naive"`` or shorter prompts). Numerics: a cached forward and an uncached forward of the same
tokens differ by float rounding (about 1e-6 in fp32), so an argmax can flip on an exact near-tie;
the tests check token equality over >= 32 tokens on several prompts.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import DynamicCache

from . import models

PATHS = ("plain", "shared", "separate", "text", "naive")


# ----------------------------------------------------------------------------- model helpers
def decoder_of(model):
    """The decoder body whose ``last_hidden_state`` is the input of ``lm_head`` (lib/features.py)."""
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def lm_logp(model, h: torch.Tensor) -> torch.Tensor:
    """Next-token log-probs (float32) from decoder hidden states ``[..., d]``."""
    logits = model.get_output_embeddings()(h).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.log_softmax(logits, dim=-1)


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError(f"prompt {i} has no tokens")
        ids[i, L - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, L - len(s):] = 1
    return ids.to(device), mask.to(device)


def _cache_kw(model) -> str:
    """The decoder's cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values`` (5.17)."""
    t = type(decoder_of(model))
    if t not in _CACHE_KW:
        _CACHE_KW[t] = "cache" if "cache" in inspect.signature(t.forward).parameters else "past_key_values"
    return _CACHE_KW[t]


_CACHE_KW: dict = {}


def run_decoder(model, cache, **kw):
    """Decoder forward that appends to ``cache`` (a DynamicCache) under either argument name."""
    return decoder_of(model)(**kw, **{_cache_kw(model): cache}, use_cache=True)


@torch.no_grad()
def prefill(model, ids, mask):
    """Forward a left-padded prompt batch; returns (last hidden [B, d], cache).

    Rows with the same prompt share one forward: only the distinct rows are forwarded and their
    cache entries are copied to every row (notebook 05 decodes one query under many (reward model,
    w) settings as rows of one batch, so most of a batch's prompts repeat).
    """
    uniq, inv = torch.unique(torch.cat([ids, mask], 1), dim=0, return_inverse=True)
    if len(uniq) < len(ids):
        h, cache = prefill(model, uniq[:, : ids.shape[1]], uniq[:, ids.shape[1]:])
        for layer in _layers(cache):
            layer.keys, layer.values = layer.keys[inv], layer.values[inv]
        return h[inv], cache
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    out = run_decoder(model, cache, input_ids=ids, attention_mask=mask, position_ids=pos)
    return out.last_hidden_state[:, -1], cache


@torch.no_grad()
def step_one(model, cache, tokens, mask, pos):
    """Append one token per row (``mask`` already includes it); returns its hidden state [B, d]."""
    out = run_decoder(model, cache, input_ids=tokens[:, None], attention_mask=mask, position_ids=pos[:, None])
    return out.last_hidden_state[:, -1]


def tree_mask(prefix_mask: torch.Tensor, c: int, dtype) -> torch.Tensor:
    """Additive 4D mask ``[B, 1, c, S + c]``: candidate i sees the (non-pad) prefix and itself.

    ``prefix_mask`` is ``[B, S]`` (every candidate sees the same prefix) or ``[B, c, S]`` (each its
    own, as in teacher forcing where candidate (t, i) sees only ``x + y_<t``).
    """
    B, S = prefix_mask.shape[0], prefix_mask.shape[-1]
    pm = prefix_mask.bool()
    pm = pm[:, None, :].expand(B, c, S) if pm.dim() == 2 else pm
    allowed = torch.cat([pm, torch.eye(c, dtype=torch.bool, device=pm.device).expand(B, c, c)], dim=-1)
    m = torch.zeros(allowed.shape, dtype=dtype, device=pm.device)
    return m.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


@torch.no_grad()
def tree_forward(model, cache, cand, prefix_mask, pos):
    """Forward ``c`` candidate tokens per row against one prefix cache (no copies of it).

    ``pos`` is each row's position ``[B]`` (all candidates at the same place) or ``[B, c]``.
    Returns their hidden states ``[B, c, d]``; the cache grows by ``c`` entries (see keep_entry).
    """
    B, c = cand.shape
    check_window(model, prefix_mask.shape[-1] + c)
    dtype = next(model.parameters()).dtype
    pos = pos[:, None].expand(B, c) if pos.dim() == 1 else pos
    out = run_decoder(model, cache, input_ids=cand, attention_mask=tree_mask(prefix_mask, c, dtype), position_ids=pos)
    return out.last_hidden_state


def check_window(model, n: int) -> None:
    """Raise if ``n`` cache entries would not fit a sliding-window layer (it would drop prefix entries)."""
    cfg = model.config
    window = getattr(cfg, "sliding_window", None)
    if window and "sliding_attention" in (getattr(cfg, "layer_types", None) or []) and n > window - 1:
        raise NotImplementedError(
            f"the sequence with its candidates ({n} tokens) outgrows the model's sliding window ({window}): "
            "cached RGD keeps whole prefixes; use shorter prompts, fewer candidates per chunk, or path='naive'")


def window_room(model, S: int) -> int:
    """How many candidate tokens fit beside ``S`` cache entries in a sliding-window layer (no window: a lot)."""
    cfg = model.config
    window = getattr(cfg, "sliding_window", None)
    if window and "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
        return max(1, window - 1 - S)  # <= 0 left: tree_forward raises its clear error
    return 1 << 30


def _layers(cache):
    layers = getattr(cache, "layers", None)
    ok = ("DynamicLayer", "DynamicSlidingWindowLayer")
    if layers is None or any(type(layer).__name__ not in ok for layer in layers):
        raise NotImplementedError("cached RGD needs a DynamicCache of DynamicLayers (full or sliding-window "
                                  f"attention; got {type(cache).__name__}); use path='naive' for this model")
    return layers


def keep_entry(cache, S: int, j: torch.Tensor | None) -> None:
    """Truncate the cache to ``S`` prefix entries, plus (if ``j`` given) row b's candidate ``j[b]``.

    The candidates occupy entries ``S .. S+c-1``; the chosen one is copied into slot ``S`` in
    place (a gather of B entries) and the rest dropped by slicing, so nothing is re-encoded.
    A sliding-window layer is truncated the same way: :func:`tree_forward` has already checked that
    prefix + candidates fit its window, so it still holds every entry.
    """
    layers = _layers(cache)
    if j is not None:  # index tensors built once, not per layer (GPU steps are launch-bound)
        dev = layers[0].keys.device
        ar, src = torch.arange(len(j), device=dev), S + j.to(dev)
    n = S + (j is not None)
    for layer in layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            if j is not None:
                t[:, :, S] = t[ar, :, src]
            setattr(layer, name, t[:, :, :n])
        if getattr(layer, "is_sliding", False):  # inside the window (tree_forward checks): nothing was dropped
            layer.cumulative_length = n


# ----------------------------------------------------------------------------- prompt caches
class PromptCache:
    """A model's cache of a batch of left-padded prompts, to which one set of right-padded responses at a
    time is appended, read (and its candidates scored), and cut away again: every prompt is forwarded
    once for all its responses (reward features of chosen and rejected, lib/features.py; teacher-forced
    policy accuracy, lib/policy_acc.py)."""

    @torch.no_grad()
    def __init__(self, model, xs: list[list[int]], pad_id: int):
        self.model, self.pad = model, pad_id
        self.dev = next(model.parameters()).device
        ids, self.pmask = left_pad(xs, pad_id, self.dev)
        self.h_last, self.cache = prefill(model, ids, self.pmask)  # h_last [N, d]: the state that predicts y_0
        self.plen, self.Sx = self.pmask.sum(1), self.pmask.shape[1]
        self.appended = False

    @torch.no_grad()
    def append(self, ys: list[list[int]]) -> torch.Tensor:
        """Forward the responses ``ys`` (one per prompt) after the prompts; returns their states [N, Ty, d]."""
        self.rollback()
        Ty = max(map(len, ys))
        ids = torch.full((len(ys), Ty), self.pad, dtype=torch.long)
        self.rmask = torch.zeros((len(ys), Ty), dtype=torch.long)
        for n, y in enumerate(ys):
            ids[n, : len(y)], self.rmask[n, : len(y)] = torch.tensor(y, dtype=torch.long), 1
        self.rmask = self.rmask.to(self.dev)
        check_window(self.model, self.Sx + Ty)
        out = run_decoder(self.model, self.cache, input_ids=ids.to(self.dev),
                              attention_mask=torch.cat([self.pmask, self.rmask], 1),
                              position_ids=self.plen[:, None] + torch.arange(Ty, device=self.dev))
        self.appended = True
        return out.last_hidden_state

    def rollback(self):
        """Drop any appended responses (the cache holds the prompts only again)."""
        if self.appended:
            keep_entry(self.cache, self.Sx, None)
            self.appended = False

    @torch.no_grad()
    def candidates(self, T: list[int], cand: list[torch.Tensor], chunk: int) -> torch.Tensor:
        """States ``[N, Tmax * k, d]`` of candidate v at step t of row n, seeing ``x_n + y_n,<t``.

        All of a row's ``T_n * k`` candidates go against the one cache of prompts + appended responses
        (the tree mask of lib/py, one prefix mask per candidate); rows are padded to ``Tmax * k``
        with pad tokens that see only themselves (never read). At most ``chunk`` candidate tokens per
        forward in all (and inside a sliding window, see :func:`lib.check_window`).
        """
        N, Ty = self.rmask.shape
        S, k = self.Sx + Ty, cand[0].shape[1]
        C = max(T) * k
        ids = torch.full((N, C), self.pad, dtype=torch.long, device=self.dev)
        sees = torch.zeros(N, C, S, dtype=torch.bool, device=self.dev)
        pos = torch.zeros(N, C, dtype=torch.long, device=self.dev)
        col = torch.arange(Ty, device=self.dev)
        for n in range(N):
            t = torch.arange(T[n], device=self.dev).repeat_interleave(k)
            ids[n, : T[n] * k] = cand[n].reshape(-1).to(self.dev)
            sees[n, : T[n] * k, : self.Sx] = self.pmask[n].bool()
            sees[n, : T[n] * k, self.Sx :] = col[None] < t[:, None]  # y_<t
            pos[n, : T[n] * k] = self.plen[n] + t
        c = max(1, min(C, chunk // N, window_room(self.model, S)))
        hs = []
        for s in range(0, C, c):
            hs.append(tree_forward(self.model, self.cache, ids[:, s : s + c], sees[:, s : s + c], pos[:, s : s + c]))
            keep_entry(self.cache, S, None)  # drop this chunk's entries again
        return torch.cat(hs, 1)


# ----------------------------------------------------------------------------- rewards
def head_rewards(rm, feats: torch.Tensor, uidx: torch.Tensor) -> torch.Tensor:
    """The decoding reward on features ``[B, c, d]`` with user rows ``[B]`` -> rewards ``[B, c]`` (float32).

    A reward model of lib/rewards.py guides with ``rm.guidance``: its reward standardised by the mean and
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

    def __init__(self, policy, prompt_ids, heads, chunk, kind, rm_model=None, rm_prompt_ids=None,
                 featurizer=None, tok=None, prompts=None):
        self.policy, self.prompt_ids, self.heads, self.chunk, self.kind = policy, prompt_ids, heads, chunk, kind
        self.rm_model, self.rm_prompt_ids, self.feat, self.tok, self.prompts = rm_model, rm_prompt_ids, featurizer, tok, prompts
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


# ----------------------------------------------------------------------------- the decoder
@dataclass
class RGDOutput:
    """Result of :func:`generate`. Per-step arrays are ``[B, T, k]``; finished rows hold -1 / nan."""

    sequences: list[list[int]]  # generated ids per row (EOS included when produced, no padding)
    texts: list[str]  # decoded with skip_special_tokens=True
    path: str
    cand_ids: torch.Tensor | None = None
    cand_logp: torch.Tensor | None = None
    cand_reward: torch.Tensor | None = None
    chosen: torch.Tensor | None = None  # [B, T] index of the chosen candidate
    extra: dict = field(default_factory=dict)  # settings, prefill_s, step_s (wall time of each full step)

    @property
    def cand_score(self):
        w = self.extra.get("w", 0.0)
        w = torch.as_tensor(w, dtype=torch.float32).reshape(-1, 1, 1) if isinstance(w, (list, tuple)) else w
        return None if self.cand_logp is None else self.cand_logp + w * self.cand_reward


def _prompt_ids(tok, prompts):
    if all(isinstance(p, str) for p in prompts):
        return [models.prompt_ids(tok, p) for p in prompts], list(prompts)
    if all(isinstance(p, (list, tuple)) for p in prompts):
        return [list(map(int, p)) for p in prompts], None
    raise TypeError("prompts must be all user-message strings or all token-id lists")


@torch.no_grad()
def generate(policy, tok, prompts, users=None, rm=None, w: float | list = 1.0, k: int = 10, max_new_tokens: int = 64,
             temperature: float = 0.0, seed: int = 0, return_scores: bool = False, chunk_size: int = 4096,
             path: str | None = None, policy_name: str | None = None, featurizer=None,
             eos_token_ids: list[int] | None = None, progress: bool = False) -> RGDOutput:
    """Reward-guided decoding of a batch of user messages (ARGS, Khanov et al. 2024).

    Args:
        policy, tok: causal LM and its tokenizer (``models.load_causal_lm``).
        prompts: user messages (formatted with ``models.prompt_ids``) or token-id lists (then the
            text path is unavailable, since it needs the message text).
        users: one user id per prompt (or one string for all); needed when ``rm`` is given.
        rm: a ``lib.rewards.RewardModel`` or None (plain greedy / top-k sampling), or a list with
            one reward model (or None) per prompt: every row applies its own head to features that
            all rows share (one backbone; see :class:`RowHeads`), so many (reward model, w)
            settings decode as rows of one batch.
        w, k: reward weight (one for all rows, or one per row; a row without a reward model
            needs w = 0) and number of candidates. ``temperature`` 0 = greedy, else sample
            ``softmax(score / temperature)`` over the k candidates with ``torch.Generator(seed)``.
        return_scores: keep every step's candidate ids, log-probs, rewards and choice.
        chunk_size: at most this many candidate tokens (paths a/b) or texts (c) per forward.
        path: override the automatic choice (tests, benchmarks): one of ``PATHS``.
        policy_name: registry name of the policy (for ``rm.shares_policy``); inferred from
            ``policy.registry_name`` or the folder name when omitted.
        featurizer: the reward backbone for paths b/c (``lib.features`` LMFeaturizer or
            EncoderFeaturizer); default ``rm._featurizer`` or one loaded from ``rm.backbone``.
    """
    prompt_ids, texts = _prompt_ids(tok, prompts)
    B, dev = len(prompt_ids), next(policy.parameters()).device
    per_row = isinstance(rm, (list, tuple))
    ws = [float(v) for v in w] if isinstance(w, (list, tuple)) else [float(w)] * B
    if len(ws) != B:
        raise ValueError(f"need one w per prompt: got {len(ws)} for {B} prompts")
    row_rms = list(rm) if per_row else [rm] * B
    if per_row and any(m is None and v != 0 for m, v in zip(row_rms, ws)):
        raise ValueError("a row without a reward model needs w = 0")
    first = next((m for m in row_rms if m is not None), None)
    kind = None
    if first is not None:
        kind, featurizer = first.decoding_path(models.registry_name(policy, policy_name), tok, featurizer, dev)
    rm = first
    path = path or ("plain" if rm is None or (all(v == 0 for v in ws) and not return_scores) else kind)
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; one of {PATHS}")
    if path != "plain" and rm is None:
        raise ValueError(f"path {path!r} needs a reward model")
    if path in ("shared", "separate", "text") and path != kind:
        raise ValueError(f"path {path!r} does not fit this reward model (its path is {kind!r})")
    if kind == "text" and path in ("text", "naive") and texts is None:
        raise ValueError("the text path needs prompts as strings, not token ids")
    heads = RowHeads(row_rms, users, B) if rm is not None else None
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    eos = torch.tensor(eos_token_ids if eos_token_ids is not None else models.eos_ids(policy, tok),
                       dtype=torch.long, device=dev)

    t_start = time.perf_counter()
    ids, mask = left_pad(prompt_ids, pad, dev)
    if path == "plain":
        be = _Plain(policy, ids, mask)
    elif path == "shared":
        be = _Shared(policy, ids, mask, heads, chunk_size)
    elif path == "separate":
        rm_ids, rm_mask = left_pad([models.prompt_ids(featurizer.tok, t) for t in texts] if texts else prompt_ids,
                                   pad, next(featurizer.model.parameters()).device)
        be = _Separate(policy, ids, mask, heads, chunk_size, featurizer.model, rm_ids, rm_mask)
    elif path == "text":
        be = _Text(policy, ids, mask, heads, chunk_size, featurizer, tok, texts)
    else:
        rm_p = ([models.prompt_ids(featurizer.tok, t) for t in texts] if texts else prompt_ids) \
            if kind == "separate" else None
        be = _Naive(policy, prompt_ids, heads, chunk_size, kind,
                    rm_model=getattr(featurizer, "model", None), rm_prompt_ids=rm_p,
                    featurizer=featurizer, tok=tok, prompts=texts)

    gen = torch.Generator(device=dev).manual_seed(seed) if temperature > 0 else None
    gen_lists: list[list[int]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    rec = {"ids": [], "logp": [], "r": [], "j": []}
    ar = torch.arange(B, device=dev)
    wt = torch.tensor(ws, dtype=torch.float32, device=dev)[:, None]
    step_s, t_prev = [], time.perf_counter()
    prefill_s = t_prev - t_start
    for t in tqdm(range(max_new_tokens), disable=not progress, desc=f"rgd[{path}]"):
        if t:
            step_s.append(time.perf_counter() - t_prev)  # the previous step, its advance included
            t_prev = time.perf_counter()
        logp = be.next_logp()
        cl, ci = logp.topk(min(k, logp.shape[-1]), dim=-1)
        r = be.rewards(ci, gen_lists, done).to(dev) if be.needs_rewards else torch.zeros_like(cl)
        score = cl + wt * r
        if temperature > 0:
            j = torch.multinomial(F.softmax(score / temperature, -1), 1, generator=gen)[:, 0]
        else:
            j = score.argmax(-1)
        tokens = ci[ar, j]
        tokens = torch.where(done, torch.full_like(tokens, pad), tokens)
        if return_scores:
            nan = done[:, None]
            rec["ids"].append(ci.masked_fill(nan, -1).cpu())
            rec["logp"].append(cl.masked_fill(nan, float("nan")).cpu())
            rec["r"].append(r.float().masked_fill(nan, float("nan")).cpu())
            rec["j"].append(j.masked_fill(done, -1).cpu())
        for b in (~done).nonzero()[:, 0].tolist():
            gen_lists[b].append(int(tokens[b]))
        done = done | torch.isin(tokens, eos)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        be.advance(tokens, j)

    out = RGDOutput(gen_lists, [tok.decode(g, skip_special_tokens=True) for g in gen_lists], path,
                    extra={"w": w, "k": k, "temperature": temperature, "seed": seed, "prefill_s": prefill_s,
                           "step_s": step_s})
    if return_scores:
        out.cand_ids, out.cand_logp = torch.stack(rec["ids"], 1), torch.stack(rec["logp"], 1)
        out.cand_reward, out.chosen = torch.stack(rec["r"], 1), torch.stack(rec["j"], 1)
    return out


# ----------------------------------------------------------------------------- LogitsProcessor
class RGDLogitsProcessor:
    """ARGS as a ``transformers`` logits processor, for ``model.generate(logits_processor=[...])``.

    Returns ``log p(v) + w * r(v)`` on the policy's top-k tokens and ``-inf`` elsewhere, so greedy
    ``generate`` follows RGD. It sees only ``input_ids``, so it takes the *naive* path: every
    candidate sequence is re-encoded from scratch each step (cost ~ k forwards of the full
    sequence per row and step, like the official ARGS code minus its cache copies); use
    :func:`generate` for the cached paths. Prompts must be the ones given to ``generate``, in the
    same order, left-padded (``tok.padding_side = "left"``).
    """

    def __init__(self, policy, tok, rm, prompts, users, w: float = 1.0, k: int = 10, policy_name=None,
                 featurizer=None, chunk_size: int = 4096):
        self.tok, self.rm, self.w, self.k, self.chunk = tok, rm, w, k, chunk_size
        self.prompt_ids, self.prompts = _prompt_ids(tok, prompts)
        dev = next(policy.parameters()).device
        self.kind, featurizer = rm.decoding_path(models.registry_name(policy, policy_name), tok, featurizer, dev)
        if self.kind == "text" and self.prompts is None:
            raise ValueError("a text-path reward model needs prompts as strings")
        rm_p = [models.prompt_ids(featurizer.tok, t) for t in self.prompts] if self.kind == "separate" and self.prompts \
            else self.prompt_ids
        self.naive = _Naive(policy, self.prompt_ids, RowHeads(rm, users, len(self.prompt_ids)), chunk_size,
                            self.kind, rm_model=getattr(featurizer, "model", None), rm_prompt_ids=rm_p,
                            featurizer=featurizer, tok=tok, prompts=self.prompts)
        self.start = None

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        gen = input_ids[:, self.start:].tolist()
        logp = F.log_softmax(scores.float(), dim=-1)
        cl, ci = logp.topk(self.k, dim=-1)
        done = torch.zeros(len(gen), dtype=torch.bool)
        r = self.naive.rewards(ci, gen, done).to(scores.device)
        out = torch.full_like(logp, float("-inf"))
        return out.scatter_(1, ci, cl + self.w * r)
