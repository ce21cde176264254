"""Plain greedy decoding: the base policy's replies (notebook 05's base rows, the ICL rows) and the cached
zero-shot generator Pref-LaMP asks for its rejected responses and LaMP-7 paraphrases (notebook 01 passes it to
:func:`lib.data.preflamp.build`, which only sees a function from prompts to texts)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..core import models
from ..core.progress import bar
from ..data.gencache import cached_generator
from . import rgd


@torch.no_grad()
def greedy_generate(model, tok, messages: list[str], max_new_tokens: int = 32, batch_size: int = 8,
                    progress: bool = False, desc: str = "generate") -> list[str]:
    """Plain batched greedy decoding of user messages (left padding); returns the decoded replies.

    Runs the cached plain loop of :func:`lib.decoding.rgd.generate` (``rm=None``), which equals
    ``model.generate`` greedy token for token (tests/test_rgd.py) at less overhead per step, and
    forwards a prompt shared by several rows once. Batches are fixed slices of ``messages`` in the
    given order, so the same list always yields the same batches (and, on CPU, the same tokens).
    """
    out = []
    for s in bar(range(0, len(messages), batch_size), progress=progress, desc=desc):
        out += rgd.generate(model, tok, list(messages[s : s + batch_size]),
                            settings=rgd.DecodingSettings(max_new_tokens=max_new_tokens)).texts
    return out


def policy_generator(model_name: str = "smollm2-135m", max_new_tokens: int = 24, batch_size: int = 16,
                     cache_path: str | Path | None = None, device=None) -> Callable[[list[str]], list[str]]:
    """The base policy's zero-shot greedy output, cached and resumable: the rejected responses of
    ``rejected="policy"`` and the LaMP-7 paraphrases (one generator, one model load, one cache).

    The model is loaded only if some batch is not cached yet.
    """
    state = {}

    def batch(prompts):
        if "model" not in state:
            state["model"], state["tok"] = models.load_causal_lm(model_name, device=device)
        return greedy_generate(state["model"], state["tok"], prompts, max_new_tokens, batch_size=len(prompts))

    gen = cached_generator(batch, cache_path, f"{models.cache_id(model_name)}|{max_new_tokens}|greedy", batch_size,
                           desc=f"policy[{model_name}]")
    gen.description = f"{model_name} zero-shot greedy, max_new_tokens={max_new_tokens}"
    return gen
