"""Frozen-backbone features for reward models, computed once per dataset and cached on disk.

Two featurizers, one contract: ``features(prompts, responses) -> Tensor[N, d]``.

* :class:`LMFeaturizer` (causal LM, default the policy's own model): the text the policy sees is
  ``prompt_text(prompt) + response + EOS``; the feature of a (prompt, response) is the decoder's
  ``last_hidden_state`` (the input of ``lm_head``, after the final norm) at the appended
  end-of-sequence token: the state reward-guided decoding scores when its candidate is "stop here",
  so a head trained on full responses has seen that state (the prefix features of a response are
  the states at its own tokens, the states decoding scores for every other candidate). Because this is exactly the state the policy computes while decoding, a reward head on
  it can be evaluated inside reward-guided decoding from the policy's own forward, and the reward
  of *every prefix* of a response comes out of one forward pass (:meth:`prefix_features`).
* :class:`EncoderFeaturizer` (MiniLM): mean-pooled token embeddings of the pair
  ``(prompt, response)``; the prompt is truncated first so the response always survives.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..core import models
from ..core.io import atomic_path, sha256_text
from ..core.progress import bar


def lm_token_ids(tok, prompt: str, response: str, eos: bool = False) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) exactly as the policy sees them; ``eos`` appends the end token."""
    p = models.prompt_ids(tok, prompt)
    r = tok(response, add_special_tokens=False)["input_ids"]
    if eos and r:
        if tok.eos_token_id is None:
            raise ValueError(f"tokenizer {type(tok).__name__} has no eos_token_id: cannot mark the end of a response")
        r = r + [tok.eos_token_id]
    return p, r


class LMFeaturizer:
    kind = "lm_last"

    def __init__(self, model, tok, batch_size: int = 16, max_length: int = 1024, name: str = "lm"):
        self.model, self.tok, self.batch_size, self.max_length, self.name = model, tok, batch_size, max_length, name
        self.cache_id = getattr(model, "cache_id", None) or name  # feature caches' key (models.cache_id)
        self.decoder = models.decoder_of(model)
        self.dim = model.config.hidden_size

    @classmethod
    def from_name(cls, name: str, device=None, dtype=None, **kw):
        model, tok = models.load_causal_lm(name, device=device, dtype=dtype)
        return cls(model, tok, name=name, **kw)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _ids(self, prompt, response):
        p, r = lm_token_ids(self.tok, prompt, response, eos=True)
        if not r:
            raise ValueError(f"empty response for prompt {prompt[:60]!r}")
        if len(p) + len(r) > self.max_length:
            warnings.warn(f"[features] sequence of {len(p) + len(r)} tokens truncated to {self.max_length} "
                          "by dropping the start of the prompt", stacklevel=3)
            p = p[-(self.max_length - len(r)):] if len(r) < self.max_length else []
            r = r[-self.max_length:]
        return p, r

    @torch.no_grad()
    def hidden(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded forward; returns (last_hidden_state [B, L, d] float32, lengths [B])."""
        ids, mask = models.pad_batch(seqs, self.tok.pad_token_id or 0, "right", self.device)
        out = self.decoder(input_ids=ids, attention_mask=mask)
        return out.last_hidden_state.float(), torch.tensor([len(s) for s in seqs])

    def features(self, prompts, responses, progress: bool = False) -> torch.Tensor:
        seqs = [sum(self._ids(p, r), []) for p, r in zip(prompts, responses)]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # length-bucketed batches
        out = torch.empty(len(seqs), self.dim)
        for s in bar(range(0, len(order), self.batch_size), progress=progress, desc=f"features[{self.name}]"):
            idx = order[s : s + self.batch_size]
            h, lens = self.hidden([seqs[i] for i in idx])
            out[idx] = h[torch.arange(len(idx)), lens.to(h.device) - 1].cpu()
        return out

    @torch.no_grad()
    def pair_hidden(self, prompts, response_sets, progress: bool = False) -> list[list[torch.Tensor]]:
        """Hidden states of every response token, several responses per prompt, each distinct text forwarded once.

        ``response_sets`` is a list of response lists aligned with ``prompts`` (e.g. ``[chosen,
        rejected]``). A prompt that recurs (preference sets compare many responses to one post) and a
        (prompt, response) that recurs (a response shared by several pairs) are forwarded once: per batch
        of distinct prompts (similar lengths together), one forward of the left-padded prompts into a
        cache, then one forward per slot of their distinct right-padded responses against it (the cache is
        cut back to the prompts in between). Returns ``out[set][i]``: ``[T_i + 1, d]`` float32 on the CPU:
        the states of the T_i response tokens (prefix features) and, last, of the appended end token (the
        full-response feature :meth:`features` reads); a recurring text's rows share one tensor.
        Equal to forwarding each ``prompt + response`` alone up to float rounding (tested); a batch that
        would outgrow a sliding-window layer is forwarded whole instead.
        """
        first, slot, uprompts, uresp = {}, {}, [], []  # prompt -> u; (u, response) -> its slot; distinct texts
        for i, p in enumerate(prompts):
            u = first.setdefault(p, len(uprompts))
            if u == len(uprompts):
                uprompts.append(p)
                uresp.append([])
            for rs in response_sets:
                if (u, rs[i]) not in slot:
                    slot[u, rs[i]] = len(uresp[u])
                    uresp[u].append(rs[i])
        hs = self._slot_hidden(uprompts, uresp, progress)
        return [[hs[first[p]][slot[first[p], rs[i]]] for i, p in enumerate(prompts)] for rs in response_sets]

    def _slot_hidden(self, prompts, response_lists, progress: bool) -> list[list[torch.Tensor]]:
        """:meth:`pair_hidden` of distinct prompts, each with its own list of distinct responses (``out[u][j]``)."""
        from ..core.kvcache import PromptCache, window_room

        n = len(prompts)
        ids = [[self._ids(p, r) for r in rl] for p, rl in zip(prompts, response_lists)]
        # one prompt for all of its responses: the shortest kept suffix (they differ only when truncated)
        xs = [min((pr for pr, _ in row), key=len) for row in ids]
        ys = [[r for _, r in row] for row in ids]
        out = [[None] * len(row) for row in ys]
        order = sorted(range(n), key=lambda i: (-len(ys[i]), -len(xs[i]), i))  # as many slots, similar lengths
        pad = self.tok.pad_token_id or 0
        for s in bar(range(0, n, self.batch_size), progress=progress, desc=f"pair features[{self.name}]"):
            idx = order[s : s + self.batch_size]
            slots = max(len(ys[i]) for i in idx)
            R = max(len(y) for i in idx for y in ys[i])
            if window_room(self.model, max(len(xs[i]) for i in idx)) < R:  # would leave a sliding window: whole
                for j in range(slots):
                    rows = [i for i in idx if j < len(ys[i])]
                    h, _ = self.hidden([xs[i] + ys[i][j] for i in rows])
                    for b, i in enumerate(rows):
                        out[i][j] = h[b, len(xs[i]) : len(xs[i]) + len(ys[i][j])].cpu()
                continue
            pc = PromptCache(self.model, [xs[i] for i in idx], pad)
            for j in range(slots):
                # a prompt with fewer responses takes a one-token stand-in in this slot (its states are not read)
                h = pc.append([ys[i][j] if j < len(ys[i]) else [pad] for i in idx])
                for b, i in enumerate(idx):
                    if j < len(ys[i]):
                        out[i][j] = h[b, : len(ys[i][j])].float().cpu()
        return out

    def prefix_features(self, prompt: str, response: str) -> torch.Tensor:
        """Feature of every non-empty prefix of ``response`` ([T, d], without the end token) from one forward."""
        p, r = self._ids(prompt, response)
        h, _ = self.hidden([p + r])
        return h[0, len(p) : len(p) + len(r) - 1].cpu()


class EncoderFeaturizer:
    kind = "encoder_mean"

    def __init__(self, model, tok, batch_size: int = 32, max_length: int = 256, name: str = "encoder"):
        self.model, self.tok, self.batch_size, self.max_length, self.name = model, tok, batch_size, max_length, name
        self.cache_id = getattr(model, "cache_id", None) or name  # feature caches' key (models.cache_id)
        self.dim = model.config.hidden_size

    @classmethod
    def from_name(cls, name: str = "minilm-l6", device=None, **kw):
        model, tok = models.load_encoder(name, device=device)
        return cls(model, tok, name=name, **kw)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def features(self, prompts, responses, progress: bool = False) -> torch.Tensor:
        """Mean-pooled states of each (prompt, response), in batches of similar length (little padding)."""
        prompts, responses = list(prompts), list(responses)
        out = torch.empty(len(prompts), self.dim)
        size = [len(p) + len(r) for p, r in zip(prompts, responses)]  # characters: a cheap length proxy
        order = sorted(range(len(prompts)), key=lambda i: (-size[i], i))
        for s in bar(range(0, len(order), self.batch_size), progress=progress, desc=f"features[{self.name}]"):
            idx = order[s : s + self.batch_size]
            enc = self.tok([prompts[i] for i in idx], [responses[i] for i in idx], truncation="only_first",
                           max_length=self.max_length, padding=True, return_tensors="pt").to(self.device)
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out[idx] = ((h * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu()
        return out


def featurizer(name: str, device=None, **kw):
    """Featurizer for a registry model name (causal LM or encoder)."""
    s = models.spec(name)
    return (LMFeaturizer if s.kind == "causal_lm" else EncoderFeaturizer).from_name(name, device=device, **kw)


class CorruptCacheError(ValueError):
    """A feature cache file cannot be used; the message names it and says to delete it."""


def _corrupt(path):
    return lambda why: CorruptCacheError(f"feature cache {path} is corrupt ({why}); delete it and the next run "
                                         "recomputes it")


def load_torch(path):
    """``torch.load(path, weights_only=True)`` (no code is unpickled), or :class:`CorruptCacheError` naming
    the file and saying whether it is empty, truncated or not a torch file."""
    path, corrupt = Path(path), _corrupt(path)
    size = path.stat().st_size
    if size == 0:
        raise corrupt("empty file")
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file: say which and what to do
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":  # torch.save writes a zip archive: the start is there, the end is not
            why = f"truncated: a torch zip archive of {size} bytes without its end"
        else:
            why = "not a torch file"
        # torch's own message is left out: it is long and may suggest weights_only=False (unpickling code)
        raise corrupt(f"{why}; torch.load: {type(e).__name__}") from None


def load_cache(path, n_rows: int | None = None, dim: int | None = None) -> torch.Tensor:
    """A cached feature tensor ``[n_rows, dim]`` (``weights_only``: no code is unpickled), or
    :class:`CorruptCacheError` naming the file: empty, truncated, not a torch file, or not a 2-D
    floating-point tensor of the expected shape."""
    path = Path(path)
    corrupt = _corrupt(path)
    x = load_torch(path)
    if not isinstance(x, torch.Tensor):
        raise corrupt(f"holds a {type(x).__name__}, not a feature tensor")
    want = f"[{'?' if n_rows is None else n_rows}, {'?' if dim is None else dim}]"
    if x.dim() != 2 or not x.is_floating_point() or (n_rows is not None and x.shape[0] != n_rows) \
            or (dim is not None and x.shape[1] != dim):
        raise corrupt(f"a {x.dtype} tensor of shape {list(x.shape)} where {want} floating-point features "
                      f"({'one row per prompt' if n_rows is not None else 'rows'}) were expected")
    return x


def cached_features(feat, prompts, responses, cache_dir: str | Path, progress: bool = True) -> torch.Tensor:
    """``feat.features`` memoised on disk, keyed by backbone (``feat.cache_id``: :func:`lib.core.models.cache_id`, else
    its name), kind and the exact texts.

    The cache file is written atomically (no truncated file after a kill); an unusable one (empty,
    truncated, not a torch file, wrong shape) raises :class:`CorruptCacheError` naming it.
    """
    prompts, responses = list(prompts), list(responses)
    key = sha256_text("\x1e".join([getattr(feat, "cache_id", feat.name), feat.kind, str(getattr(feat, "max_length", ""))]
                                  + [f"{p}\x1f{r}" for p, r in zip(prompts, responses)]))[:24]
    path = Path(cache_dir) / f"{feat.name}-{key}.pt"
    if path.exists():
        return load_cache(path, min(len(prompts), len(responses)), getattr(feat, "dim", None))
    x = feat.features(prompts, responses, progress=progress)
    with atomic_path(path) as tmp:
        torch.save(x, tmp)
    return x
