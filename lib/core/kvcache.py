"""KV-cache machinery shared by reward-guided decoding (lib/decoding/rgd.py), teacher forcing (lib/evaluation/policy_accuracy.py)
and reward features (lib/rewards/features.py): prefill, one-token steps, candidate "tree" forwards against one
prefix cache (a 4D mask: each candidate sees the prefix and itself), and truncation of the cache back
to its prefix (optionally keeping one chosen candidate's entry).

The cache is a ``transformers.DynamicCache`` of full-attention or sliding-window layers; a sliding-window
layer keeps every entry only while prefix + candidates fit its window (:func:`check_window`).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from .models import decoder_of, pad_batch


def lm_logp(model, h: torch.Tensor) -> torch.Tensor:
    """Next-token log-probs (float32) from decoder hidden states ``[..., d]``."""
    logits = model.get_output_embeddings()(h).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.log_softmax(logits, dim=-1)

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
    once for all its responses (reward features of chosen and rejected, lib/rewards/features.py; teacher-forced
    policy accuracy, lib/evaluation/policy_accuracy.py)."""

    @torch.no_grad()
    def __init__(self, model, xs: list[list[int]], pad_id: int):
        self.model, self.pad = model, pad_id
        self.dev = next(model.parameters()).device
        ids, self.pmask = pad_batch(xs, pad_id, "left", self.dev)
        self.h_last, self.cache = prefill(model, ids, self.pmask)  # h_last [N, d]: the state that predicts y_0
        self.plen, self.Sx = self.pmask.sum(1), self.pmask.shape[1]
        self.appended = False

    @torch.no_grad()
    def append(self, ys: list[list[int]]) -> torch.Tensor:
        """Forward the responses ``ys`` (one per prompt) after the prompts; returns their states [N, Ty, d]."""
        self.rollback()
        ids, self.rmask = pad_batch(ys, self.pad, "right", self.dev)
        Ty = ids.shape[1]
        check_window(self.model, self.Sx + Ty)
        out = run_decoder(self.model, self.cache, input_ids=ids, attention_mask=torch.cat([self.pmask, self.rmask], 1),
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
        (:func:`tree_mask`, one prefix mask per candidate); rows are padded to ``Tmax * k``
        with pad tokens that see only themselves (never read). At most ``chunk`` candidate tokens per
        forward in all (and inside a sliding window, see :func:`check_window`).
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

