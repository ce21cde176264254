"""Reward-guided decoding (ARGS, Khanov et al., ICLR 2024), batched, cached and multi-user.

At each step the policy proposes its top-``k`` next tokens ``v``; each is scored

    score(v) = log p(v | x, y_<t) + w * r(x, y_<t + v; user)

and the next token is ``argmax score`` (greedy) or a draw from ``softmax(score / T)``.
Log-probs and logits differ by a per-step constant, so greedy choices equal ARGS' logit form.
With ``w = 0`` (or no reward model) decoding is plain greedy decoding, token for token.

The reward ``r = rm.guidance(features, rm.user_index(users))`` (lib/rewards: the head's reward,
standardised by the model's calibration unless it was loaded with ``calibrated=False``) is computed on
one of four *paths*, chosen from the reward model (``DecodingSettings.path`` overrides it, for tests and
benchmarks; lib/decoding/backends.py builds each path's backend, lib/core/kvcache.py holds the cache machinery):

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

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core import models
from ..core.progress import bar
from .backends import BACKENDS, RowHeads, make_backend

PATHS = tuple(BACKENDS)  # ("plain", "shared", "separate", "text", "naive")


@dataclass(frozen=True)
class DecodingSettings:
    """How :func:`generate` (and :class:`RGDLogitsProcessor`: ``k``, ``chunk_size``) decodes.

    ``k``: candidates per step (the policy's top-k). ``temperature`` 0 = greedy, else sample
    ``softmax(score / temperature)`` over the k candidates with ``torch.Generator(seed)``.
    ``chunk_size``: at most this many candidate tokens (paths a/b) or texts (c) per forward.
    ``eos_token_ids``: ids that end a row (None: ``models.eos_ids``; ``[]``: never stop early).
    ``return_scores``: keep every step's candidate ids, log-probs, rewards and choice.
    ``path``: override the automatic choice (tests, benchmarks): one of ``PATHS``.
    """

    k: int = 10
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    chunk_size: int = 4096
    eos_token_ids: list[int] | None = None
    return_scores: bool = False
    path: str | None = None
    progress: bool = False

    def __post_init__(self):
        for name, low in (("k", 1), ("max_new_tokens", 0), ("chunk_size", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"DecodingSettings.{name} must be an integer >= {low}, not {v!r}")
        if not self.temperature >= 0:
            raise ValueError(f"DecodingSettings.temperature must be >= 0, not {self.temperature!r}")
        if self.path is not None and self.path not in PATHS:
            raise ValueError(f"unknown path {self.path!r}; one of {PATHS}")


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



def encode_prompts(tok, prompts) -> tuple[list[list[int]], list[str] | None]:
    """(token ids, messages) of user messages (formatted by ``models.prompt_ids``) or of token-id lists
    (then messages is None)."""
    if all(isinstance(p, str) for p in prompts):
        return [models.prompt_ids(tok, p) for p in prompts], list(prompts)
    if all(isinstance(p, (list, tuple)) for p in prompts):
        return [list(map(int, p)) for p in prompts], None
    raise TypeError("prompts must be all user-message strings or all token-id lists")


def _row_settings(rm, w, B: int) -> tuple[list, list[float]]:
    """One reward model (or None) and one float w per row; a row without a reward model needs w = 0."""
    if B == 0:
        raise ValueError("generate: no prompts (an empty batch)")
    ws = [float(v) for v in w] if isinstance(w, (list, tuple)) else [float(w)] * B
    if len(ws) != B:
        raise ValueError(f"need one w per prompt: got {len(ws)} for {B} prompts")
    if not all(math.isfinite(v) for v in ws):  # w = nan decoded as greedy and was reported as an RGD row
        raise ValueError(f"w must be finite, got {sorted({v for v in ws if not math.isfinite(v)}, key=str)}")
    per_row = isinstance(rm, (list, tuple))
    row_rms = list(rm) if per_row else [rm] * B
    if per_row and any(m is None and v != 0 for m, v in zip(row_rms, ws)):
        raise ValueError("a row without a reward model needs w = 0")
    return row_rms, ws


@torch.no_grad()
def generate(policy, tok, prompts, users=None, rm=None, w: float | list = 1.0,
             settings: DecodingSettings | None = None, policy_name: str | None = None, featurizer=None) -> RGDOutput:
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
        w: reward weight, one for all rows or one per row (a row without a reward model needs w = 0).
        settings: :class:`DecodingSettings` (default: ``DecodingSettings()``).
        policy_name: registry name of the policy (for ``rm.decoding_path``); inferred from
            ``policy.registry_name`` or the folder name when omitted.
        featurizer: the reward backbone for paths b/c (``lib.rewards.features`` LMFeaturizer or
            EncoderFeaturizer); default ``rm._featurizer`` or one loaded from ``rm.backbone``.
    """
    s = settings or DecodingSettings()
    prompt_ids, texts = encode_prompts(tok, prompts)
    B, dev = len(prompt_ids), next(policy.parameters()).device
    row_rms, ws = _row_settings(rm, w, B)
    rm = next((m for m in row_rms if m is not None), None)
    kind = None
    if rm is not None:
        kind, featurizer = rm.decoding_path(models.registry_name(policy, policy_name), tok, featurizer, dev)
    path = s.path or ("plain" if rm is None or (all(v == 0 for v in ws) and not s.return_scores) else kind)
    if path != "plain" and rm is None:
        raise ValueError(f"path {path!r} needs a reward model")
    if path in ("shared", "separate", "text") and path != kind:
        raise ValueError(f"path {path!r} does not fit this reward model (its path is {kind!r})")
    heads = RowHeads(row_rms, users, B) if rm is not None else None
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    eos = torch.tensor(s.eos_token_ids if s.eos_token_ids is not None else models.eos_ids(policy, tok),
                       dtype=torch.long, device=dev)

    t_start = time.perf_counter()
    be = make_backend(path, kind, policy, tok, prompt_ids, texts, heads, featurizer, s.chunk_size)
    gen = torch.Generator(device=dev).manual_seed(s.seed) if s.temperature > 0 else None
    gen_lists: list[list[int]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    rec = {"ids": [], "logp": [], "r": [], "j": []}
    ar = torch.arange(B, device=dev)
    wt = torch.tensor(ws, dtype=torch.float32, device=dev)[:, None]
    step_s, t_prev = [], time.perf_counter()
    prefill_s = t_prev - t_start
    for t in bar(range(s.max_new_tokens), progress=s.progress, desc=f"rgd[{path}]"):
        if t:
            step_s.append(time.perf_counter() - t_prev)  # the previous step, its advance included
            t_prev = time.perf_counter()
        logp = be.next_logp()
        cl, ci = logp.topk(min(s.k, logp.shape[-1]), dim=-1)
        r = be.rewards(ci, gen_lists, done).to(dev) if be.needs_rewards else torch.zeros_like(cl)
        score = cl + wt * r
        if s.temperature > 0:
            j = torch.multinomial(F.softmax(score / s.temperature, -1), 1, generator=gen)[:, 0]
        else:
            j = score.argmax(-1)
        tokens = ci[ar, j]
        tokens = torch.where(done, torch.full_like(tokens, pad), tokens)
        if s.return_scores:
            nan = done[:, None]
            rec["ids"].append(ci.masked_fill(nan, -1).cpu())
            rec["logp"].append(cl.masked_fill(nan, float("nan")).cpu())
            rec["r"].append(r.float().masked_fill(nan, float("nan")).cpu())
            rec["j"].append(j.masked_fill(done, -1).cpu())
        for b in (~done).nonzero()[:, 0].tolist():
            gen_lists[b].append(int(tokens[b]))
        done = done | torch.isin(tokens, eos)
        if bool(done.all()) or t == s.max_new_tokens - 1:
            break
        be.advance(tokens, j)

    out = RGDOutput(gen_lists, [tok.decode(g, skip_special_tokens=True) for g in gen_lists], path,
                    extra={"w": w, "k": s.k, "temperature": s.temperature, "seed": s.seed, "prefill_s": prefill_s,
                           "step_s": step_s})
    if s.return_scores:
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
    same order, left-padded (``tok.padding_side = "left"``). Of ``settings`` it reads ``k`` and
    ``chunk_size`` (``model.generate`` does the rest).
    """

    def __init__(self, policy, tok, rm, prompts, users, w: float = 1.0, settings: DecodingSettings | None = None,
                 policy_name=None, featurizer=None):
        s = settings or DecodingSettings()
        self.w, self.k = w, s.k
        prompt_ids, texts = encode_prompts(tok, prompts)
        dev = next(policy.parameters()).device
        kind, featurizer = rm.decoding_path(models.registry_name(policy, policy_name), tok, featurizer, dev)
        self.naive = make_backend("naive", kind, policy, tok, prompt_ids, texts, RowHeads(rm, users, len(prompt_ids)),
                                  featurizer, s.chunk_size)
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
