"""Reward heads: one small class per method (:data:`METHODS`) on the :class:`RewardModel` interface (base.py),
:func:`load_reward_model`. The methods are described in the package docstring
(lib/rewards/__init__.py)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from .base import RewardModel, read_weights


def load_reward_model(directory, device=None, calibrated: bool = True) -> RewardModel:
    """Inverse of :meth:`RewardModel.save`; a fine-tuned backbone is rebuilt from the registry + LoRA. Weights
    are read by :func:`lib.rewards.base.read_weights` (``model.safetensors``, or an older release's ``model.pt``).

    ``calibrated`` sets ``rm.calibrated``: whether :meth:`RewardModel.guidance` calibrates. Models saved
    before calibration existed load with ``cal_mu = 0``, ``cal_sd = 1`` (guidance = raw reward)."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: not a saved reward model")
    cfg = json.loads(path.read_text())
    if cfg["method"] not in METHODS:
        raise ValueError(f"{path}: unknown method {cfg['method']!r}; known: {sorted(METHODS)}")
    rm = METHODS[cfg["method"]](cfg["backbone"], cfg["feature_kind"], cfg["dim"], cfg["users"], **cfg["arch"])
    state = read_weights(directory)
    state.setdefault("cal_mu", torch.zeros(()))
    state.setdefault("cal_sd", torch.ones(()))
    rm.load_state_dict(state)
    rm.metrics, rm.train_hparams = cfg.get("metrics", {}), cfg.get("train_hparams", {})
    rm.calibrated = calibrated
    if cfg.get("finetuned"):
        from peft import PeftModel

        from ..core.models import load_causal_lm
        from .features import LMFeaturizer

        base, tok = load_causal_lm(cfg["backbone"], device=device)
        rm._featurizer = LMFeaturizer(PeftModel.from_pretrained(base, directory / "lora").eval(), tok,
                                      name=cfg["backbone"])
        rm.finetuned = True
    return rm.to(device or "cpu").eval()


# --- the methods ---------------------------------------------------------------------------
def _check_arch(method: str, positive: dict | None = None, non_negative: dict | None = None) -> None:
    """Architecture sizes that must be whole numbers >= 1 (``positive``; floats > 0 for a temperature) and
    weights that must be finite and >= 0 (``non_negative``): a PAL with 0 prototypes or a VPL with 0 context
    pairs would train into a constant reward and look like a finding."""
    for k, v in (positive or {}).items():
        whole = k != "temperature"
        ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 1) if whole else \
            (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
        if not ok:
            raise ValueError(f"{method}: {k} must be {'a whole number >= 1' if whole else 'a finite number > 0'}, "
                             f"got {v!r}")
    for k, v in (non_negative or {}).items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{method}: {k} must be a finite number >= 0, got {v!r}")


class BT(RewardModel):
    """One Bradley-Terry reward shared by all users (Bradley & Terry 1952; Ouyang et al. 2022)."""

    method = "bt"

    def __init__(self, backbone, feature_kind, dim, users, **arch):
        super().__init__(backbone, feature_kind, dim, users, **arch)
        self.w = nn.Parameter(torch.zeros(dim))

    def user_index(self, users) -> torch.Tensor:  # every user gets the same reward
        return torch.zeros(len(users), dtype=torch.long)

    def _reward(self, x, u):
        return x @ self.w


class Individual(RewardModel):
    """A separate linear reward per user, trained on that user's pairs only (its gradient comes
    from them alone; the per-user BT losses are independent). New users: a fresh head from zero."""

    method = "individual"
    user_tables = ("W",)

    def __init__(self, backbone, feature_kind, dim, users, **arch):
        super().__init__(backbone, feature_kind, dim, users, **arch)
        self.W = nn.Parameter(torch.zeros(len(self.users), dim))

    def _reward(self, x, u):
        return (x * self.W[u]).sum(-1)


class UserEmbedding(RewardModel):
    """P-RM style (Li et al. 2024): shared reward conditioned on a learned user embedding e_u,
    ``r = (w + U e_u).x``. New users: only e_u is fitted, starting from 0 (the population reward)."""

    method = "user_embedding"
    user_tables = ("E",)

    def __init__(self, backbone, feature_kind, dim, users, emb_dim: int = 8, **arch):
        _check_arch(self.method, {"emb_dim": emb_dim})
        super().__init__(backbone, feature_kind, dim, users, emb_dim=emb_dim, **arch)
        self.w = nn.Parameter(torch.zeros(dim))
        self.U = nn.Parameter(torch.randn(dim, emb_dim) / math.sqrt(dim))
        self.E = nn.Parameter(0.1 * torch.randn(len(self.users), emb_dim))

    def _reward(self, x, u):
        return x @ self.w + ((x @ self.U) * self.E[u]).sum(-1)


class LoRe(RewardModel):
    """LoRe (Bose et al. 2025): K shared basis rewards ``b_k.x``; each user a simplex weight vector
    ``softmax(l_u)`` over them. New users: only l_u is fitted, from uniform weights."""

    method = "lore"
    user_tables = ("logits",)

    def __init__(self, backbone, feature_kind, dim, users, rank: int = 4, **arch):
        _check_arch(self.method, {"rank": rank})
        super().__init__(backbone, feature_kind, dim, users, rank=rank, **arch)
        self.B = nn.Parameter(torch.randn(rank, dim) / math.sqrt(dim))
        self.logits = nn.Parameter(0.01 * torch.randn(len(self.users), rank))

    def _reward(self, x, u):
        return (torch.softmax(self.logits[u], -1) * (x @ self.B.T)).sum(-1)


class PAL(RewardModel):
    """PAL (Chen et al., ICLR 2025), ideal-point form: responses mapped to ``P x`` in a latent space;
    K prototype points q_k; user u's ideal point is ``softmax(l_u) @ Q``; reward = minus the squared
    distance to it. New users: only l_u is fitted, from uniform weights. The mixture is
    ``softmax(l_u / temperature)`` (PAL's softmax has a temperature too): at 0.1 the user weights move
    at the pace of the other parameters under one learning rate.

    Initialisation as in PAL's code (a randomly initialised connector, Gaussian prototypes and user
    weights), scaled so that ``P x`` (x standardised) and the prototypes have norm about 1 and the
    initial reward differences are O(1): a zero P would give every response the same reward and the
    user weights no gradient."""

    method = "pal"
    user_tables = ("logits",)

    def __init__(self, backbone, feature_kind, dim, users, n_prototypes: int = 4, latent_dim: int = 16,
                 temperature: float = 0.1, **arch):
        _check_arch(self.method, {"n_prototypes": n_prototypes, "latent_dim": latent_dim, "temperature": temperature})
        super().__init__(backbone, feature_kind, dim, users, n_prototypes=n_prototypes, latent_dim=latent_dim,
                         temperature=temperature, **arch)
        self.P = nn.Parameter(torch.randn(latent_dim, dim) / math.sqrt(dim * latent_dim))
        self.Q = nn.Parameter(torch.randn(n_prototypes, latent_dim) / math.sqrt(latent_dim))
        self.logits = nn.Parameter(temperature * torch.randn(len(self.users), n_prototypes))

    def _reward(self, x, u):
        ideal = torch.softmax(self.logits[u] / self.arch["temperature"], -1) @ self.Q
        return -((x @ self.P.T - ideal) ** 2).sum(-1)


class VPL(RewardModel):
    """VPL (Poddar et al. 2024): ``r = (w + U z).x`` with z from an encoder of the user's context
    pairs: ``q(z | C) = N(mu, diag(sigma^2))``, ``[mu, log sigma^2] = g(mean_i phi(x+_i - x-_i))``.
    Training samples, for each pair, ``n_context`` of its user's *other* training pairs (the pair
    scored is never its own context, as at test time), draws z by reparameterisation and adds
    ``beta * KL(q || N(0, I))``; a user's only pair gets the empty-context latent. The posterior mean of every known user
    (all their training pairs as context) is stored in ``Z``; ``adapt`` only encodes (no training).
    """

    method = "vpl"

    def __init__(self, backbone, feature_kind, dim, users, latent_dim: int = 8, enc_hidden: int = 64,
                 n_context: int = 8, beta: float = 1e-3, **arch):
        _check_arch(self.method, {"latent_dim": latent_dim, "enc_hidden": enc_hidden, "n_context": n_context},
                    {"beta": beta})
        super().__init__(backbone, feature_kind, dim, users, latent_dim=latent_dim, enc_hidden=enc_hidden,
                         n_context=n_context, beta=beta, **arch)
        self.phi = nn.Sequential(nn.Linear(dim, enc_hidden), nn.GELU(), nn.Linear(enc_hidden, enc_hidden), nn.GELU())
        self.to_q = nn.Linear(enc_hidden, 2 * latent_dim)
        self.w = nn.Parameter(torch.zeros(dim))
        self.U = nn.Parameter(0.1 * torch.randn(dim, latent_dim) / math.sqrt(dim))  # z ~ N(0, I): small U z at first
        self.register_buffer("Z", torch.zeros(len(self.users), latent_dim))
        self._ctx = None

    def reward_z(self, x, z):
        """Reward of standardised features ``x`` [..., d] for latents ``z`` [..., m] (broadcast)."""
        return x @ self.w + ((x @ self.U) * z).sum(-1)

    def _reward(self, x, u):
        return self.reward_z(x, self.Z[u])

    def encode(self, diffs: torch.Tensor, mask: torch.Tensor | None = None):
        """``diffs`` [G, C, d] standardised (chosen - rejected) features -> (mu, logvar) [G, m]."""
        h = self.phi(diffs)
        if mask is None:
            h = h.mean(1)
        else:
            m = mask.unsqueeze(-1).float()
            h = (h * m).sum(1) / m.sum(1).clamp(min=1)
        mu, logvar = self.to_q(h).chunk(2, -1)
        return mu, logvar.clamp(-10, 10)

    def _diffs(self, xc, xr):
        return (xc.float() - xr.float()) / self.sd  # the means cancel

    def prepare(self, xc, xr, u):
        order = torch.argsort(u, stable=True)
        counts = torch.bincount(u, minlength=len(self.users))
        pos = torch.empty_like(order)
        pos[order] = torch.arange(len(order), device=order.device)  # pair i sits at D[pos[i]]
        self._ctx = (self._diffs(xc, xr)[order], torch.cumsum(counts, 0) - counts, counts, pos)
        self.refresh()

    def pair_logits(self, xc, xr, u, pair=None):
        D, start, count, pos = self._ctx
        C = self.arch["n_context"]
        own = pos[pair] - start[u] if pair is not None else torch.full_like(u, -1)  # offset in its user's block
        n = count[u] - (own >= 0).long()  # context candidates: the user's other pairs
        pick = (torch.rand(len(u), C, device=D.device) * n[:, None]).long()
        pick = pick + ((own[:, None] >= 0) & (pick >= own[:, None])).long()  # skip the pair itself
        idx = (start[u, None] + pick).clamp(max=len(D) - 1)
        mu, logvar = self.encode(D[idx], (n[:, None] > 0).expand(-1, C))
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1).mean()
        xcs, xrs = (xc.float() - self.mu) / self.sd, (xr.float() - self.mu) / self.sd
        return self.reward_z(xcs, z) - self.reward_z(xrs, z), self.arch["beta"] * kl

    @torch.no_grad()
    def _posterior_means(self, D, start, count, pos=None):
        C = int(count.max())
        pos = torch.arange(C, device=D.device)
        mask = pos[None] < count[:, None]
        idx = (start[:, None] + pos[None]).clamp(max=len(D) - 1)
        return self.encode(D[idx], mask)[0]

    def refresh(self):
        self.Z = self._posterior_means(*self._ctx)

    def _fit_new_users(self, new, records, features, **kw):
        """Unseen users: encode their pairs as context (no gradient step; ``kw`` are ignored)."""
        xc, xr = self._pair_tensors(records, features)
        u = torch.tensor([new.index(r["user"]) for r in records], device=self.mu.device)
        order = torch.argsort(u, stable=True)
        counts = torch.bincount(u, minlength=len(new))
        z = self._posterior_means(self._diffs(xc, xr)[order], torch.cumsum(counts, 0) - counts, counts)
        self.Z = torch.cat([self.Z, z])

    def __getstate__(self):  # deepcopy / pickle without the training context
        state = self.__dict__.copy()
        state["_ctx"] = None
        return state


METHODS: dict[str, type[RewardModel]] = {c.method: c for c in (BT, Individual, UserEmbedding, LoRe, PAL, VPL)}
