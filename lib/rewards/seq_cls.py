"""A Hugging Face sequence-classification checkpoint (``num_labels == 1``) as a reward model of this project.

The checkpoint is wrapped as a *text-path* reward model, the path of this project's MiniLM reward models: the
reward of (prompt, response) is its logit, and reward-guided decoding re-encodes each candidate text (RGD path c,
lib/decoding/backends.py). It is user-independent (every user reads the same reward) and guides with its raw
logit (``calibrated = False``: no training rewards to calibrate on). The text it reads is the tokenizer's chat
template applied to ``[user: prompt, assistant: response]`` when it has one, else the text pair
``(prompt, response)``. :func:`load_any_reward_model` loads either kind of reward model from a name or folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core import models
from .base import RewardModel, weights_file


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


def is_saved_reward_model(folder) -> bool:
    """Whether ``folder`` was written by :meth:`RewardModel.save`: a ``config.json`` with a ``method`` and a
    weights file (``model.safetensors``, or an older release's ``model.pt``)."""
    folder = Path(str(folder)).expanduser()
    if not (folder / "config.json").is_file() or weights_file(folder) is None:
        return False
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError:
        return False
    return isinstance(cfg, dict) and "method" in cfg


def load_any_reward_model(rm, device=None) -> RewardModel:
    """``rm`` as a reward model: a :class:`RewardModel` as is, a folder saved by :meth:`RewardModel.save`
    (:func:`lib.rewards.load_reward_model`), or a sequence-classification checkpoint (folder, hub id or mapped
    name, :func:`lib.core.models.load_sequence_classifier`) wrapped by :class:`SequenceClassifierRM`."""
    if isinstance(rm, RewardModel):
        return rm
    if is_saved_reward_model(rm):
        from .heads import load_reward_model

        return load_reward_model(Path(str(rm)).expanduser(), device=device)
    model, tok = models.load_sequence_classifier(str(rm), device=device)
    return SequenceClassifierRM(LogitFeaturizer(model, tok, name=str(rm)))
