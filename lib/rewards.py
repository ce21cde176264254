"""Personalized reward models: one interface, several methods.

Contract (shared with lib/rgd.py and lib/policy_acc.py):

* a reward model is ``head(features, user_idx)`` on top of a frozen featurizer named by
  ``backbone`` (a registry name, see lib/models.py) of ``feature_kind`` "lm_last" (causal LM
  last_hidden_state at the last token, see lib/features.py) or "encoder_mean" (MiniLM);
* ``users`` lists the users it knows; ``user_index(users)`` maps ids to rows and raises a clear
  ``KeyError`` for an unknown user (call ``adapt`` first);
* ``shares_policy(policy_name)`` says whether its features are the policy's own hidden states
  (RGD path a); ``finetuned`` backbones (LoRA) never share.
"""
from __future__ import annotations

import torch
from torch import nn


class RewardModel(nn.Module):
    method: str = "base"

    def __init__(self, backbone: str, feature_kind: str, dim: int, users: list[str]):
        super().__init__()
        if feature_kind not in ("lm_last", "encoder_mean"):
            raise ValueError(f"unknown feature_kind {feature_kind!r}")
        self.backbone, self.feature_kind, self.dim = backbone, feature_kind, dim
        self.users = list(users)
        self.finetuned = False
        self._featurizer = None

    # --- users -------------------------------------------------------------------------
    def user_index(self, users) -> torch.Tensor:
        idx = {u: i for i, u in enumerate(self.users)}
        missing = [u for u in users if u not in idx]
        if missing:
            raise KeyError(f"{self.method} reward model does not know user(s) {missing[:5]}; "
                           f"known: {len(self.users)} users. Call .adapt(user, pairs) first.")
        return torch.tensor([idx[u] for u in users], dtype=torch.long)

    # --- the reward --------------------------------------------------------------------
    def head(self, feats: torch.Tensor, user_idx: torch.Tensor) -> torch.Tensor:
        """Reward from features ``[..., dim]`` and user rows ``[...]`` (broadcast); returns ``[...]``."""
        raise NotImplementedError

    def shares_policy(self, policy_name: str) -> bool:
        return self.feature_kind == "lm_last" and self.backbone == policy_name and not self.finetuned
