"""Personalized reward models: one interface, several methods.

Contract (shared with lib/rgd.py and lib/policy_acc.py):

* a reward model is ``head(features, user_idx)`` on top of a frozen featurizer named by
  ``backbone`` (a registry name, see lib/models.py) of ``feature_kind`` "lm_last" (causal LM
  last_hidden_state; a full response is read at an appended end-of-sequence token, the state
  decoding scores when it considers stopping, see lib/features.py) or "encoder_mean" (MiniLM);
* ``users`` lists the users it knows; ``user_index(users)`` maps ids to rows and raises a clear
  ``KeyError`` for an unknown user (call ``adapt`` first);
* ``shares_policy(policy_name)`` says whether its features are the policy's own hidden states
  (RGD path a); ``finetuned`` backbones (LoRA) never share.

Methods (all heads read standardised features ``x = (f - mu) / sd``, statistics of the training
pairs' full-response features and, when the :class:`PairFeatures` have them, their prefix features,
the states reward-guided decoding scores; so one learning rate suits every backbone):

=================  ==========================================================================
``bt``             ``r(x) = w.x``: one Bradley-Terry reward for all users (Bradley & Terry 1952;
                   Ouyang et al. 2022).
``individual``     ``r(x, u) = w_u.x``: a separate head per user, fitted on that user's pairs only.
``user_embedding`` ``r(x, u) = (w + U e_u).x``: a shared reward conditioned on a learned user
                   embedding e_u (P-RM, Li et al. 2024, "Personalized language modeling from
                   personalized human feedback"). With a frozen backbone the embedding can only act
                   through an interaction with the response features; the bilinear form is the
                   simplest one (P-RM feeds e_u as soft tokens through the whole LM).
``lore``           ``r(x, u) = sum_k a_uk (b_k.x)``, ``a_u`` on the simplex: a shared low-rank basis
                   of K reward functions (LoRe, Bose et al. 2025).
``pal``            ``r(x, u) = -||P x - sum_k a_uk q_k||^2``, ``a_u`` on the simplex: K prototype
                   ideal points in a learned space, each user a mixture of them (PAL, Chen et al.,
                   ICLR 2025, ideal-point model). P starts random, as PAL's connector does (a zero P
                   gives every response the same reward and the user weights no gradient).
``vpl``            ``r(x, z) = (w + U z).x`` with ``z ~ q(z | user's context pairs)``: a Gaussian
                   latent from a permutation-invariant encoder (mean-pooled MLP of the feature
                   differences chosen - rejected), trained with the BT loss plus beta * KL(q || N(0, I))
                   (VPL, Poddar et al. 2024). A training pair's context never contains that pair. The
                   posterior mean of each known user is stored, so ``head`` works like the other
                   methods; unseen users need no training.
=================  ==========================================================================

Training (:func:`train`): BT loss, AdamW (lr 1e-3: at 1e-2 heads on 384-d features of a few pairs per
user overfit within one step), gradients clipped. Validation rule (``val_rule``): ``"holdout"``
holds out ``round(val_frac * N)`` training pairs drawn across users, never a user's last pair, and
keeps the epoch >= 1 of lowest validation loss (``patience`` epochs without improvement stop);
the initial heads are not a candidate (zero heads tie on every pair). With fewer than ``min_val``
such pairs, ``"fixed_epochs"``: every pair trains for ``min(epochs, fixed_epochs)`` epochs and
``val_acc`` is NaN (never a training accuracy). A diverging run is retried with lr / 10 (twice).
A model whose rewards are (nearly) constant on its validation pairs (training pairs if none), or
that never left its initial weights, is flagged in ``metrics["degenerate"]`` (a reason; "" when fine)
with a warning; :func:`train_zoo` records the flag (and skips a model that still diverges) and
:func:`accuracy_table` averages only unflagged seeds and counts the flagged ones.

Calibration: every trained model stores ``cal_mu`` / ``cal_sd``, the mean and sd of its rewards (each
pair's own user) on the prefix and full-response features of its training pairs (full only when no
prefixes were computed, and for the LoRA path). :meth:`RewardModel.guidance` is the reward that
decoding adds to logits: ``(r - cal_mu) / cal_sd`` when ``rm.calibrated`` (default; set by
``load_reward_model(..., calibrated=...)``), else the raw ``head``. Adapted users keep the model's
calibration.

Public API: :func:`train`, :meth:`RewardModel.adapt`, :meth:`RewardModel.score`,
:meth:`RewardModel.score_prefixes`, :meth:`RewardModel.guidance`, :meth:`RewardModel.save`,
:func:`load_reward_model`, :func:`rm_accuracy`, :class:`PairFeatures`.
"""
from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .io import atomic_dir, atomic_path, seed_everything, sha256_text, write_json
from .models import same_tokenizer


# ======================================================================================
# features of preference pairs
# ======================================================================================
@dataclass
class PairFeatures:
    """Features of the chosen and rejected response of every pair, addressed by ``pair_id``.

    ``prefix_chosen`` / ``prefix_rejected`` ([N, P, d], optional) hold the features of P random
    prefixes per response, cut at the same relative position ``frac`` ([N, P]) on both sides (the
    prefix-trained ablation; RAD, Deng & Raffel 2023, trains rewards on every prefix).
    """

    backbone: str
    kind: str
    pair_ids: list[str]
    chosen: torch.Tensor
    rejected: torch.Tensor
    prefix_chosen: torch.Tensor | None = None
    prefix_rejected: torch.Tensor | None = None

    def __post_init__(self):
        self.index = {p: i for i, p in enumerate(self.pair_ids)}
        if len(self.index) != len(self.pair_ids):
            raise ValueError("PairFeatures: duplicate pair_id")
        if self.chosen.shape != self.rejected.shape or len(self.chosen) != len(self.pair_ids):
            raise ValueError(f"PairFeatures: shapes {tuple(self.chosen.shape)} / {tuple(self.rejected.shape)} "
                             f"do not match {len(self.pair_ids)} pairs")

    @property
    def dim(self) -> int:
        return int(self.chosen.shape[-1])

    def rows(self, records) -> torch.Tensor:
        missing = [r["pair_id"] for r in records if r["pair_id"] not in self.index]
        if missing:
            raise KeyError(f"no features for pair_id(s) {missing[:5]} ({len(missing)} missing); "
                           "compute PairFeatures on these records")
        return torch.tensor([self.index[r["pair_id"]] for r in records], dtype=torch.long)

    def take(self, records, prefixes: bool = False):
        i = self.rows(records)
        if not prefixes:
            return self.chosen[i], self.rejected[i]
        if self.prefix_chosen is None:
            raise ValueError("prefix_train needs PairFeatures computed with n_prefix > 0")
        return self.prefix_chosen[i], self.prefix_rejected[i]

    @classmethod
    def compute(cls, feat, records, n_prefix: int = 0, cache_dir=None, seed: int = 0, progress: bool = True):
        """Features of ``records`` with a featurizer of lib/features.py, cached under ``cache_dir``.

        A causal LM forwards each prompt once for both responses (:meth:`LMFeaturizer.pair_hidden`)
        and reads the full-response and the ``n_prefix`` prefix features from the same pass; an
        encoder re-encodes word prefixes.
        """
        from .features import cached_features

        prompts = [r["prompt"] for r in records]
        ids = [r["pair_id"] for r in records]
        if n_prefix == 0 and feat.kind != "lm_last":
            get = (lambda resp: cached_features(feat, prompts, resp, cache_dir, progress)) if cache_dir else \
                (lambda resp: feat.features(prompts, resp, progress=progress))
            return cls(feat.name, feat.kind, ids, get([r["chosen"] for r in records]),
                       get([r["rejected"] for r in records]))
        key = sha256_text("\x1e".join([FEATURE_VERSION, feat.name, feat.kind, str(getattr(feat, "max_length", "")),
                                       str(n_prefix), str(seed)] + [f"{r['prompt']}\x1f{r['chosen']}\x1f{r['rejected']}"
                                                                    for r in records]))[:24]
        path = Path(cache_dir) / f"{feat.name}-pairs-{key}.pt" if cache_dir else None
        if path is not None and path.exists():
            d = _load_features(path)
        else:
            frac = torch.rand(len(records), n_prefix, generator=torch.Generator().manual_seed(seed))
            chosen, rejected = [r["chosen"] for r in records], [r["rejected"] for r in records]
            if feat.kind == "lm_last":
                c, pc, r_, pr = _lm_pair_features(feat, prompts, chosen, rejected, frac, progress)
            else:
                (c, pc), (r_, pr) = (_encoder_prefix_features(feat, prompts, side, frac, progress)
                                     for side in (chosen, rejected))
            d = {"chosen": c, "rejected": r_}
            if n_prefix:
                d |= {"prefix_chosen": pc, "prefix_rejected": pr}
            if path is not None:
                with atomic_path(path) as tmp:
                    torch.save(d, tmp)
        return cls(feat.name, feat.kind, ids, **d)


FEATURE_VERSION = "pairs-v3"  # part of the feature cache key: bump when the computation changes


def _load_features(path) -> dict:
    """The cached pair features, or :class:`lib.features.CorruptCacheError` naming the file (empty, truncated,
    not a torch file, or not the dict of feature tensors this module writes)."""
    from .features import _corrupt, load_torch

    d = load_torch(path)
    if not isinstance(d, dict) or not {"chosen", "rejected"} <= set(d) or \
            not all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in d.values()):
        raise _corrupt(path)(f"holds a {type(d).__name__} that is not the dict of pair feature tensors (chosen, "
                             "rejected[, prefix_*]) written by PairFeatures")
    return d


def _cut(frac: torch.Tensor, n: int) -> torch.Tensor:
    """Prefix lengths in 1..n for relative positions ``frac`` in [0, 1)."""
    return (frac * n).ceil().long().clamp(1, max(n, 1))


def _lm_pair_features(feat, prompts, chosen, rejected, frac, progress):
    """Full-response and prefix features of both sides, every prompt forwarded once.

    ``pair_hidden`` gives per response the T response-token states then the state of an appended
    end-of-sequence token: the full feature is that last state, prefixes are cut among the T others.
    """
    hs = feat.pair_hidden(prompts, [chosen, rejected], progress=progress)
    out = []
    for side in hs:
        full = torch.stack([h[-1] for h in side])
        pre = torch.stack([h[_cut(frac[i], len(h) - 1) - 1] for i, h in enumerate(side)]) if frac.shape[1] else None
        out += [full, pre]
    return out


def _encoder_prefix_features(feat, prompts, responses, frac, progress):
    full = feat.features(prompts, responses, progress=progress)
    words = [r.split() for r in responses]
    P = frac.shape[1]
    cut_texts = [" ".join(w[: int(_cut(frac[i, j], max(len(w), 1)))]) or r
                 for i, (w, r) in enumerate(zip(words, responses)) for j in range(P)]
    pre = feat.features([p for p in prompts for _ in range(P)], cut_texts, progress=progress)
    return full, pre.reshape(len(responses), P, -1)


# ======================================================================================
# the base class
# ======================================================================================
class RewardModel(nn.Module):
    method: str = "base"
    user_tables: tuple[str, ...] = ()  # per-user parameter tables (row i = self.users[i])

    def __init__(self, backbone: str, feature_kind: str, dim: int, users: list[str], **arch):
        super().__init__()
        if feature_kind not in ("lm_last", "encoder_mean"):
            raise ValueError(f"unknown feature_kind {feature_kind!r}")
        self.backbone, self.feature_kind, self.dim = backbone, feature_kind, dim
        self.users = list(users)
        self.finetuned = False
        self._featurizer = None
        self.arch = dict(arch)  # architecture hyperparameters (saved in config.json)
        self.metrics: dict = {}
        self.train_hparams: dict = {}
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sd", torch.ones(dim))
        self.register_buffer("cal_mu", torch.zeros(()))  # reward calibration, see guidance()
        self.register_buffer("cal_sd", torch.ones(()))
        self.calibrated = True  # guidance() calibrates (load_reward_model(..., calibrated=False): raw head)

    def standardise(self, feats: torch.Tensor):
        """Set the feature statistics ``mu``, ``sd`` from training features ``[N, dim]``."""
        feats = feats.float()
        self.mu.copy_(feats.mean(0))
        self.sd.copy_(feats.std(0).nan_to_num(1.0).clamp(min=1e-4))

    def set_calibration(self, rewards: torch.Tensor):
        """``cal_mu``, ``cal_sd`` = mean and sd of ``rewards``; sd 1 when they are (nearly) constant."""
        r = rewards.detach().float().flatten()
        mu, sd = r.mean(), r.std() if len(r) > 1 else r.new_zeros(())
        self.cal_mu.fill_(float(mu))
        self.cal_sd.fill_(float(sd) if sd > 1e-6 * (1 + mu.abs()) else 1.0)
        self.metrics |= {"cal_mu": float(self.cal_mu), "cal_sd": float(self.cal_sd)}

    def calibrate(self, r: torch.Tensor) -> torch.Tensor:
        """Rewards on the scale of the training states: ``(r - cal_mu) / cal_sd``."""
        return (r - self.cal_mu) / self.cal_sd

    def guidance(self, feats: torch.Tensor, user_idx) -> torch.Tensor:
        """The reward that guides decoding: ``calibrate(head(...))`` if ``self.calibrated`` else ``head``."""
        r = self.head(feats, user_idx)
        return self.calibrate(r) if self.calibrated else r

    # --- users -------------------------------------------------------------------------
    def user_index(self, users) -> torch.Tensor:
        idx = {u: i for i, u in enumerate(self.users)}
        missing = [u for u in users if u not in idx]
        if missing:
            raise KeyError(f"{self.method} reward model does not know user(s) {missing[:5]}; "
                           f"known: {len(self.users)} users. Call .adapt(user, pairs) first.")
        return torch.tensor([idx[u] for u in users], dtype=torch.long)

    # --- the reward --------------------------------------------------------------------
    def head(self, feats: torch.Tensor, user_idx) -> torch.Tensor:
        """Reward from features ``[..., dim]`` and user rows ``[...]`` (broadcast); returns ``[...]``.

        ``user_idx`` is aligned with the *leading* dims of ``feats`` (``[B]`` with ``[B, k, d]``
        means one user per row); features of any float dtype are cast to float32.
        """
        x = (feats.to(self.mu.device, torch.float32) - self.mu) / self.sd
        u = torch.as_tensor(user_idx, device=self.mu.device, dtype=torch.long)
        lead = x.dim() - 1
        if u.dim() < lead:
            u = u.reshape(tuple(u.shape) + (1,) * (lead - u.dim()))
        return self._reward(x, u)

    forward = head  # lets torch.func.functional_call swap user tables in adapt()

    def _reward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def shares_policy(self, policy_name: str) -> bool:
        return self.feature_kind == "lm_last" and self.backbone == policy_name and not self.finetuned

    # --- training hooks (VPL overrides them) ---------------------------------------------
    def pair_logits(self, xc, xr, u, pair=None):
        """(r(chosen) - r(rejected), extra loss) for a training batch; ``pair``: each row's position
        among the training pairs given to :meth:`prepare` (VPL leaves it out of the row's context)."""
        return self.head(xc, u) - self.head(xr, u), xc.new_zeros(())

    def prepare(self, xc, xr, u):  # called once before training with the training pairs
        pass

    def refresh(self):  # called after every epoch, before validation
        pass

    # --- few-shot adaptation ----------------------------------------------------------------
    def _new_rows(self, name: str, n: int) -> torch.Tensor:
        """Initial rows of a user table for new users (the population prior)."""
        t = getattr(self, name)
        return torch.zeros(n, *t.shape[1:], device=t.device)

    def adapt(self, user: str, records, features=None, **kw) -> RewardModel:
        """Fit only ``user``'s parameters from a few of their pairs; shared parameters stay fixed."""
        recs = [r for r in records if r["user"] == user]
        if not recs:
            raise ValueError(f"adapt: no pairs of user {user!r} in the {len(records)} records given")
        return self.adapt_users(recs, features, **kw)

    def adapt_users(self, records, features=None, steps: int = 200, lr: float = 0.05, l2: float = 0.01,
                    seed: int = 0) -> RewardModel:
        """:meth:`adapt` for every user of ``records`` at once (their losses are independent).

        Loss per new user: mean BT loss on their pairs + ``l2`` * ||rows - prior||^2, minimised by
        Adam for a fixed number of full-batch ``steps`` (few pairs: no validation split).
        """
        new = sorted({r["user"] for r in records})
        known = [u for u in new if u in self.users]
        if known:
            raise ValueError(f"adapt: user(s) {known[:5]} already known to this {self.method} model")
        if not self.user_tables:  # bt: nothing user-specific
            self.users += new
            return self
        xc, xr = self._pair_tensors(records, features)
        seed_everything(seed)
        n0 = len(self.users)
        u = torch.tensor([n0 + new.index(r["user"]) for r in records], device=self.mu.device)
        w = 1.0 / torch.bincount(u - n0).float()[u - n0]  # per-user mean
        prior = {k: self._new_rows(k, len(new)) for k in self.user_tables}
        rows = {k: v.clone().requires_grad_(True) for k, v in prior.items()}
        opt = torch.optim.Adam(rows.values(), lr=lr)
        for _ in range(steps):
            tables = {k: torch.cat([getattr(self, k).detach(), rows[k]]) for k in self.user_tables}
            d = torch.func.functional_call(self, tables, (xc, u)) - torch.func.functional_call(self, tables, (xr, u))
            loss = (w * F.softplus(-d)).sum() + l2 * sum(((rows[k] - prior[k]) ** 2).sum() for k in rows)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for k in self.user_tables:
            setattr(self, k, nn.Parameter(torch.cat([getattr(self, k).detach(), rows[k].detach()])))
        self.users += new
        return self

    def _pair_tensors(self, records, features):
        if features is None:
            features = self.featurizer
        if not isinstance(features, PairFeatures):
            features = PairFeatures.compute(features, records, progress=False)
        self._check_features(features)
        xc, xr = features.take(records)
        return xc.to(self.mu.device), xr.to(self.mu.device)

    def _check_features(self, pf: PairFeatures):
        if pf.kind != self.feature_kind or pf.dim != self.dim or pf.backbone != self.backbone:
            raise ValueError(f"features of {pf.backbone}/{pf.kind}/d={pf.dim} do not match this reward model "
                             f"({self.backbone}/{self.feature_kind}/d={self.dim})")

    # --- scoring text -----------------------------------------------------------------------
    @property
    def featurizer(self):
        """The backbone's featurizer, loaded lazily from the registry name."""
        if self._featurizer is None:
            from .features import featurizer

            self._featurizer = featurizer(self.backbone)
        return self._featurizer

    @featurizer.setter
    def featurizer(self, feat):
        if feat.kind != self.feature_kind or feat.dim != self.dim:
            raise ValueError(f"featurizer {feat.name} ({feat.kind}, d={feat.dim}) does not match "
                             f"{self.feature_kind}, d={self.dim}")
        self._featurizer = feat

    @torch.no_grad()
    def score(self, prompts, responses, users) -> torch.Tensor:
        """Rewards ``[N]`` of (prompt, response) for each user (float32, CPU)."""
        users = [users] * len(prompts) if isinstance(users, str) else list(users)
        feats = self.featurizer.features(list(prompts), list(responses))
        return self.head(feats, self.user_index(users)).float().cpu()

    @torch.no_grad()
    def score_prefixes(self, prompt: str, response: str, user: str, tokenizer=None) -> torch.Tensor:
        """Reward of every non-empty token prefix of ``response`` (``[T]``).

        Causal-LM backbones: one forward pass (:meth:`LMFeaturizer.prefix_features`). Encoder
        backbones re-encode each prefix, whose token boundaries come from ``tokenizer`` (the
        policy's), required there.
        """
        u = self.user_index([user])
        if self.feature_kind == "lm_last":
            return self.head(self.featurizer.prefix_features(prompt, response), u).float().cpu()
        if tokenizer is None:
            raise ValueError("score_prefixes with an encoder backbone needs the policy tokenizer (tokenizer=...)")
        ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        texts = [tokenizer.decode(ids[:t]) for t in range(1, len(ids) + 1)]
        return self.head(self.featurizer.features([prompt] * len(texts), texts), u).float().cpu()

    def decoding_path(self, policy_name: str, tok, featurizer=None, device=None) -> tuple[str, object | None]:
        """How reward-guided decoding scores this model beside the policy ``policy_name`` (tokenizer ``tok``).

        ``("shared", None)``: the features are the policy's own hidden states (path a: one forward serves
        both). Otherwise its featurizer (``featurizer`` when given, else the attached one, else one loaded
        from the registry on ``device``) and ``"separate"`` when that is a causal LM with the policy's
        tokenizer (path b: its own KV cache), ``"text"`` otherwise (path c: candidate texts re-encoded).
        """
        if self.shares_policy(policy_name):
            return "shared", None
        feat = featurizer if featurizer is not None else self._featurizer
        if feat is None:
            from .features import featurizer as load_featurizer

            feat = load_featurizer(self.backbone, device=device)
        separate = self.feature_kind == "lm_last" and hasattr(feat, "model") and same_tokenizer(feat.tok, tok)
        return ("separate" if separate else "text"), feat

    # --- persistence ------------------------------------------------------------------------
    def config(self) -> dict:
        return {"method": self.method, "backbone": self.backbone, "feature_kind": self.feature_kind,
                "dim": self.dim, "users": self.users, "arch": self.arch, "finetuned": self.finetuned,
                "train_hparams": self.train_hparams, "metrics": self.metrics}

    def save(self, directory) -> Path:
        """``config.json`` + ``model.pt`` (+ ``lora/`` for a fine-tuned backbone), written atomically."""
        with atomic_dir(directory) as tmp:
            write_json(tmp / "config.json", self.config())
            torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, tmp / "model.pt")
            if self.finetuned:
                self._featurizer.model.save_pretrained(tmp / "lora")
        return Path(directory)


def load_reward_model(directory, device=None, calibrated: bool = True) -> RewardModel:
    """Inverse of :meth:`RewardModel.save`; a fine-tuned backbone is rebuilt from the registry + LoRA.

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
    state = torch.load(directory / "model.pt", map_location="cpu")
    state.setdefault("cal_mu", torch.zeros(()))
    state.setdefault("cal_sd", torch.ones(()))
    rm.load_state_dict(state)
    rm.metrics, rm.train_hparams = cfg.get("metrics", {}), cfg.get("train_hparams", {})
    rm.calibrated = calibrated
    if cfg.get("finetuned"):
        from peft import PeftModel

        from .features import LMFeaturizer
        from .models import load_causal_lm

        base, tok = load_causal_lm(cfg["backbone"], device=device)
        rm._featurizer = LMFeaturizer(PeftModel.from_pretrained(base, directory / "lora").eval(), tok,
                                      name=cfg["backbone"])
        rm.finetuned = True
    return rm.to(device or "cpu").eval()


# ======================================================================================
# the methods
# ======================================================================================
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

    def adapt_users(self, records, features=None, **kw) -> VPL:
        """Unseen users: encode their pairs as context (no gradient step)."""
        new = sorted({r["user"] for r in records})
        known = [u for u in new if u in self.users]
        if known:
            raise ValueError(f"adapt: user(s) {known[:5]} already known to this vpl model")
        xc, xr = self._pair_tensors(records, features)
        u = torch.tensor([new.index(r["user"]) for r in records], device=self.mu.device)
        order = torch.argsort(u, stable=True)
        counts = torch.bincount(u, minlength=len(new))
        z = self._posterior_means(self._diffs(xc, xr)[order], torch.cumsum(counts, 0) - counts, counts)
        self.Z = torch.cat([self.Z, z])
        self.users += new
        return self

    def __getstate__(self):  # deepcopy / pickle without the training context
        state = self.__dict__.copy()
        state["_ctx"] = None
        return state


METHODS: dict[str, type[RewardModel]] = {c.method: c for c in (BT, Individual, UserEmbedding, LoRe, PAL, VPL)}


def check_methods(methods, arch: dict | None = None) -> list[str]:
    """``methods`` as a list, or ``ValueError`` up front (before any features or training) naming unknown
    method names and listing the known ones (:data:`METHODS`). ``arch`` (method -> architecture keywords,
    as :func:`train_zoo` takes it) is checked too: every key must be a known method and every keyword one
    that the method's constructor or :func:`train` names (others would be silently ignored)."""
    import inspect

    known = sorted(METHODS)
    if isinstance(methods, str):
        raise ValueError(f"methods must be a list of method names, got the string {methods!r} "
                         f"(e.g. [{methods!r}]); known: {known}")
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown reward-model method(s) {unknown}; known: {known}")
    if arch is None:
        return methods
    if not isinstance(arch, dict):
        raise ValueError(f"arch must map a method name to its keyword arguments, got a {type(arch).__name__}")
    unknown = [m for m in arch if m not in METHODS]
    if unknown:
        raise ValueError(f"arch: unknown reward-model method(s) {unknown}; known: {known}")
    skip = {"self", "backbone", "feature_kind", "dim", "users", "method", "records", "features"}
    named = lambda f: {k for k, p in inspect.signature(f).parameters.items()  # noqa: E731
                       if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - skip
    for m, kw in arch.items():
        if not isinstance(kw, dict):
            raise ValueError(f"arch[{m!r}] must be a dict of keyword arguments, got {kw!r:.80}")
        own = named(METHODS[m].__init__)
        bad = sorted(set(kw) - own - named(train))
        if bad:
            raise ValueError(f"arch[{m!r}]: unknown option(s) {bad}; {m} takes {sorted(own) or 'none'} "
                             "(and the keywords of train())")
    return methods


# ======================================================================================
# training
# ======================================================================================
def _train_records(records):
    """The seen users' training pairs (records without these fields count as such)."""
    out = [r for r in records if r.get("split", "train") == "train" and r.get("user_group", "seen") == "seen"]
    if not out:
        raise ValueError(f"train: none of the {len(records)} records is a seen user's training pair")
    return out


def _val_split(recs, val_frac: float, min_val: int, seed: int):
    """The validation rule: ``round(val_frac * N)`` pairs drawn at random across users, never a user's
    last pair (every user keeps >= 1 training pair), so users with 1-3 pairs still give validation
    pairs. Fewer than ``min_val`` of them: no validation (the caller trains a fixed number of epochs)."""
    g = torch.Generator().manual_seed(seed)
    by_user: dict[str, list[dict]] = {}
    for r in recs:
        by_user.setdefault(r["user"], []).append(r)
    spare = []  # every pair but one (at random) of each user
    for user in sorted(by_user):
        ps = by_user[user]
        spare += [ps[i] for i in torch.randperm(len(ps), generator=g)[1:].tolist()]
    val = [spare[i] for i in torch.randperm(len(spare), generator=g)[: int(round(val_frac * len(recs)))].tolist()]
    if len(val) < min_val:
        return [], list(recs)
    held = {r["pair_id"] for r in val}
    return val, [r for r in recs if r["pair_id"] not in held]


def _check_finite(pf: PairFeatures, records):
    i = pf.rows(records)
    bad = ~(torch.isfinite(pf.chosen[i]).all(-1) & torch.isfinite(pf.rejected[i]).all(-1))
    if bad.any():
        ids = [records[j]["pair_id"] for j in bad.nonzero()[:, 0].tolist()]
        raise ValueError(f"non-finite features (NaN/inf) for {len(ids)} pair(s), e.g. pair_id {ids[:3]}")


def _device(device):
    if device is not None:
        return torch.device(device)
    from accelerate import PartialState

    return PartialState().device


def train(method: str, records, features, *, seed: int = 0, epochs: int = 200, batch_size: int = 64,
          lr: float = 1e-3, weight_decay: float = 1e-2, val_frac: float = 0.15, min_val: int = 8,
          fixed_epochs: int = 50, patience: int = 20, retries: int = 2, prefix_train: bool = False,
          n_prefix: int = 4, cache_dir=None, device=None, progress: bool = True, diverge_factor: float = 20.0,
          finetune: str | None = None, lora_r: int = 8, max_grad_norm: float | None = 1.0, task: str | None = None,
          **arch) -> RewardModel:
    """Train a personalized reward model with the Bradley-Terry loss ``-log sigmoid(r(x, y+) - r(x, y-))``.

    ``records``: preference pairs (lib/preflamp.py schema); the seen users' train pairs are used.
    Validation rule (module docstring): ``round(val_frac * N)`` of them, drawn across users and never a
    user's last pair, are held out and the epoch >= 1 of lowest validation loss is kept (``patience``);
    with fewer than ``min_val`` such pairs every pair trains ``min(epochs, fixed_epochs)`` epochs
    (``val_rule`` "fixed_epochs", ``val_acc`` NaN). ``features``: a :class:`PairFeatures` or a featurizer
    of lib/features.py (features are then computed, cached under ``cache_dir``). AdamW, mini-batches,
    on the GPU when present (accelerate's device), gradients clipped to ``max_grad_norm`` (None: off).
    ``prefix_train`` adds the pairs of random prefixes (same relative cut on both sides) to the
    training pairs. ``finetune="lora"`` trains LoRA adapters of a causal-LM backbone jointly with the
    head (see :func:`_train_lora`). A NaN loss or a training loss above ``diverge_factor`` times its
    first epoch's is a divergence: the run restarts with lr / 10, at most ``retries`` times, then
    raises :class:`FloatingPointError`. The model's ``metrics["degenerate"]`` says why it is unusable
    ("" when fine; a warning names method, backbone, ``task`` (default: the records') and seed).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    hp = dict(seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, val_frac=val_frac,
              min_val=min_val, fixed_epochs=fixed_epochs, patience=patience, prefix_train=prefix_train,
              n_prefix=n_prefix if prefix_train else 0, finetune=finetune, max_grad_norm=max_grad_norm)
    recs = _train_records(records)
    users = sorted({r["user"] for r in recs})
    if finetune is not None:
        def fit(h):
            return _train_lora(method, recs, users, features, h, lora_r, device, progress, diverge_factor, arch)
    else:
        pf = features if isinstance(features, PairFeatures) else PairFeatures.compute(
            features, recs, n_prefix=hp["n_prefix"], cache_dir=cache_dir, seed=seed, progress=progress)
        _check_finite(pf, recs)
        if prefix_train:
            hp["n_prefix"] = int(pf.take(recs[:1], prefixes=True)[0].shape[1])
        val, tr = _val_split(recs, val_frac, min_val, seed)
        dev = _device(device)

        def fit(h):
            return _fit(method, pf, tr, val, users, h, arch, dev, progress, diverge_factor)
    t0 = time.time()
    for attempt in range(retries + 1):
        try:
            rm = fit(hp | {"lr": lr / 10 ** attempt})
            break
        except FloatingPointError as e:
            if attempt == retries:
                raise FloatingPointError(f"{e} (after {retries} retries with lr / 10 each)") from None
            warnings.warn(f"train {method} seed {seed}: {e}; retrying with lr {lr / 10 ** (attempt + 1):g}", stacklevel=2)
    rm.train_hparams |= {"lr_requested": lr, "retries": attempt}
    rm.metrics["train_seconds"] = round(time.time() - t0, 3)
    if rm.metrics["degenerate"]:
        warnings.warn(f"degenerate reward model: method {method}, backbone {rm.backbone}, task "
                      f"{task or recs[0].get('task', '?')}, seed {seed}: {rm.metrics['degenerate']}", stacklevel=2)
    return rm


def _degenerate(rm: RewardModel, init: list[torch.Tensor], xc, xr, u, where: str) -> str:
    """Why ``rm`` is unusable ("" when fine): it never left its initial weights, or its rewards on the
    pairs ``xc``/``xr`` (users ``u``) are constant: no pair's reward difference exceeds 1e-4 of the
    rewards' scale (a reward that varies only between users ranks no response above another)."""
    if all(torch.equal(p.detach(), q) for p, q in zip(rm.parameters(), init)):
        return "never left its initial weights"
    with torch.no_grad():
        rc, rr = rm.head(xc, u), rm.head(xr, u)
    if not ((rc - rr).abs().max() > 1e-4 * (1 + torch.cat([rc, rr]).abs().max())):  # also NaN
        return f"constant rewards on its {where} pairs"
    return ""


def _calibrate(rm: RewardModel, pf: PairFeatures, tr, u):
    """Calibration from the rewards of the training pairs' full-response and (if any) prefix features."""
    sides = [pf.take(tr)] + ([pf.take(tr, prefixes=True)] if pf.prefix_chosen is not None else [])
    with torch.no_grad():
        rm.set_calibration(torch.cat([rm.head(x.to(rm.mu.device), u).flatten() for pair in sides for x in pair]))


def _fit(method, pf, tr, val, users, hp, arch, dev, progress, diverge_factor) -> RewardModel:
    """One training run of :func:`train` on frozen features (``tr`` / ``val``: the split)."""
    seed_everything(hp["seed"])
    g = torch.Generator().manual_seed(hp["seed"])
    rm = METHODS[method](pf.backbone, pf.kind, pf.dim, users, **arch).to(dev)
    uix = {u: i for i, u in enumerate(users)}
    xc, xr = (t.to(dev) for t in pf.take(tr))
    u = torch.tensor([uix[r["user"]] for r in tr], device=dev)
    pre = [t.to(dev) for t in pf.take(tr, prefixes=True)] if pf.prefix_chosen is not None else []
    rm.standardise(torch.cat([xc, xr] + [t.reshape(-1, pf.dim) for t in pre]))
    rm.prepare(xc, xr, u)
    u_tr, pair = u, torch.arange(len(tr), device=dev)
    if hp["prefix_train"]:
        P = pre[0].shape[1]
        xc, xr = torch.cat([xc, pre[0].reshape(-1, pf.dim)]), torch.cat([xr, pre[1].reshape(-1, pf.dim)])
        u, pair = torch.cat([u, u.repeat_interleave(P)]), torch.cat([pair, pair.repeat_interleave(P)])
    if val:
        vc, vr = (t.to(dev) for t in pf.take(val))
        vu = torch.tensor([uix[r["user"]] for r in val], device=dev)

    def val_loss():
        rm.eval()
        with torch.no_grad():
            d = rm.head(vc, vu) - rm.head(vr, vu)
        loss = F.softplus(-d).mean().item()
        if not math.isfinite(loss):
            raise FloatingPointError(f"train {method}: validation loss is {loss} (lr {hp['lr']:g})")
        return loss, (d > 0).float().mean().item()

    lr, bs = hp["lr"], hp["batch_size"]
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=hp["weight_decay"])
    init = [p.detach().clone() for p in rm.parameters()]
    init_loss = val_loss()[0] if val else float("nan")
    n_epochs = hp["epochs"] if val else min(hp["epochs"], hp["fixed_epochs"])
    best_loss, best_state, best_epoch, bad, ref, epoch = math.inf, None, 0, 0, None, 0
    bar = tqdm(range(1, n_epochs + 1), disable=not progress, desc=f"train {method}", leave=False)
    for epoch in bar:
        rm.train()
        order = torch.randperm(len(u), generator=g).to(dev)
        tot = 0.0
        for s in range(0, len(order), bs):
            b = order[s : s + bs]
            d, extra = rm.pair_logits(xc[b], xr[b], u[b], pair[b])
            loss = F.softplus(-d).mean() + extra
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train {method}: loss is {loss.item()} at epoch {epoch}, step {s // bs} "
                                         f"(lr {lr:g}); check the features for NaN/inf")
            opt.zero_grad()
            loss.backward()
            if hp["max_grad_norm"] is not None:
                torch.nn.utils.clip_grad_norm_(rm.parameters(), hp["max_grad_norm"])
            opt.step()
            tot += loss.item() * len(b)
        tot /= len(order)
        ref = tot if ref is None else ref
        if tot > diverge_factor * max(ref, math.log(2)):
            raise FloatingPointError(f"train {method}: training loss diverged to {tot:.3g} at epoch {epoch} "
                                     f"(first epoch {ref:.3g}, lr {lr:g})")
        rm.refresh()
        if not val:
            continue
        vl, vacc = val_loss()
        bar.set_postfix(train=f"{tot:.3f}", val=f"{vl:.3f}", val_acc=f"{vacc:.2f}")
        if vl < best_loss - 1e-5:  # epoch 1 always qualifies: the initial heads are no model
            best_loss, best_state, best_epoch, bad = vl, copy.deepcopy(rm.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= hp["patience"]:
                break
    if val and best_state is not None:
        rm.load_state_dict(best_state)
    elif not val:
        best_epoch = epoch
    rm.eval()
    rm.train_hparams = hp | {"n_train": len(tr), "n_val": len(val), "n_users": len(users),
                             "val_rule": "holdout" if val else "fixed_epochs"}
    rm.metrics = {"best_epoch": best_epoch, "epochs_run": epoch, "val_rule": rm.train_hparams["val_rule"],
                  "n_val": len(val), "val_loss": (best_loss if best_state is not None else init_loss) if val else float("nan"),
                  "val_acc": val_loss()[1] if val else float("nan"), "init_val_loss": init_loss}
    _calibrate(rm, pf, tr, u_tr)
    where = (vc, vr, vu, "validation") if val else (xc[: len(tr)], xr[: len(tr)], u_tr, "training")
    rm.metrics["degenerate"] = "never left its initial weights" if best_epoch == 0 else _degenerate(rm, init, *where)
    return rm


# --- LoRA fine-tuned backbone -------------------------------------------------------------
def _lm_last_with_grad(feat, seqs):
    """Last-token hidden state of token sequences, with gradients (right padding)."""
    lens = torch.tensor([len(s) for s in seqs])
    ids = torch.full((len(seqs), int(lens.max())), feat.tok.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    h = feat.decoder(input_ids=ids.to(feat.device), attention_mask=mask.to(feat.device)).last_hidden_state
    return h[torch.arange(len(seqs)), lens.to(h.device) - 1].float()


def _train_lora(method, recs, users, feat, hp, lora_r, device, progress, diverge_factor, arch):
    """Fine-tune LoRA adapters (q, v projections; Hu et al. 2022) of a causal-LM featurizer jointly
    with the reward head: the paper profile's fine-tuned backbone. No validation split or prefix
    training here (``val_rule`` "fixed_epochs"): ``hp["epochs"]`` passes over the pairs; the head
    standardises with the frozen backbone's statistics; calibration and the degenerate check use the
    fine-tuned backbone's features of the training pairs."""
    from peft import LoraConfig, get_peft_model

    from .features import LMFeaturizer

    if hp["finetune"] != "lora" or getattr(feat, "kind", None) != "lm_last":
        raise ValueError("finetune='lora' needs a causal-LM featurizer (LMFeaturizer)")
    if hp["prefix_train"]:
        raise ValueError("prefix_train is not supported with a fine-tuned backbone")
    seed_everything(hp["seed"])
    pf = PairFeatures.compute(feat, recs, progress=progress)  # frozen statistics for standardisation
    rm = METHODS[method](feat.name, feat.kind, feat.dim, users, **arch)
    dev = _device(device) if device is not None else feat.device
    model = get_peft_model(copy.deepcopy(feat.model), LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules=["q_proj", "v_proj"],
                                                  lora_dropout=0.0))
    ft = LMFeaturizer(model, feat.tok, batch_size=feat.batch_size, max_length=feat.max_length, name=feat.name)
    rm.to(dev)
    rm.standardise(torch.cat([pf.chosen, pf.rejected]).to(dev))
    uix = {u: i for i, u in enumerate(users)}
    u_all = torch.tensor([uix[r["user"]] for r in recs], device=dev)
    rm.prepare(pf.chosen.to(dev), pf.rejected.to(dev), u_all)
    init = [p.detach().clone() for p in rm.parameters()]
    seqs = [(sum(ft._ids(r["prompt"], r["chosen"]), []), sum(ft._ids(r["prompt"], r["rejected"]), [])) for r in recs]
    params = list(rm.parameters()) + [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    g, losses = torch.Generator().manual_seed(hp["seed"]), []
    model.train()
    for epoch in tqdm(range(1, hp["epochs"] + 1), disable=not progress, desc=f"train {method}+lora", leave=False):
        order = torch.randperm(len(recs), generator=g)
        tot = 0.0
        for s in range(0, len(order), hp["batch_size"]):
            b = order[s : s + hp["batch_size"]].tolist()
            h = _lm_last_with_grad(ft, [seqs[i][0] for i in b] + [seqs[i][1] for i in b])
            d, extra = rm.pair_logits(h[: len(b)], h[len(b):], u_all[b], torch.tensor(b, device=dev))
            loss = F.softplus(-d).mean() + extra
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train {method}+lora: loss is {loss.item()} at epoch {epoch} (lr {hp['lr']:g})")
            opt.zero_grad()
            loss.backward()
            if hp.get("max_grad_norm") is not None:
                torch.nn.utils.clip_grad_norm_(params, hp["max_grad_norm"])
            opt.step()
            tot += loss.item() * len(b)
        losses.append(tot / len(recs))
        if losses[-1] > diverge_factor * max(losses[0], math.log(2)):
            raise FloatingPointError(f"train {method}+lora: loss diverged to {losses[-1]:.3g} at epoch {epoch} "
                                     f"(lr {hp['lr']:g})")
    model.eval()
    rm._featurizer, rm.finetuned = ft, True
    tuned = PairFeatures.compute(ft, recs, progress=False)
    xc, xr = (t.to(dev) for t in tuned.take(recs))
    if isinstance(rm, VPL):  # latents from the fine-tuned features
        rm.prepare(xc, xr, u_all)
    rm.eval()
    rm.train_hparams = hp | {"lora_r": lora_r, "n_train": len(recs), "n_val": 0, "n_users": len(users),
                             "val_rule": "fixed_epochs"}
    rm.metrics = {"train_losses": losses, "best_epoch": hp["epochs"], "epochs_run": hp["epochs"],
                  "val_rule": "fixed_epochs", "n_val": 0, "val_loss": float("nan"), "val_acc": float("nan")}
    rm.set_calibration(torch.cat([rm.head(xc, u_all), rm.head(xr, u_all)]).detach())
    rm.metrics["degenerate"] = _degenerate(rm, init, xc, xr, u_all, "training")
    return rm


# ======================================================================================
# RM accuracy
# ======================================================================================
def bootstrap_ci(correct, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of a mean (scipy.stats.bootstrap); NaN for fewer than 2 values."""
    from scipy.stats import bootstrap

    correct = np.asarray(correct, dtype=float)
    if len(correct) < 2:
        return float("nan"), float("nan")
    if np.all(correct == correct[0]):
        return float(correct[0]), float(correct[0])
    res = bootstrap((correct,), np.mean, n_resamples=n_resamples, confidence_level=level, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def pair_correct(rm: RewardModel, records, features=None) -> np.ndarray:
    """1 where r(chosen) > r(rejected) for the pair's user, 0.5 on a tie, else 0."""
    if not records:
        return np.zeros(0)
    xc, xr = rm._pair_tensors(records, features)
    u = rm.user_index([r["user"] for r in records]).to(rm.mu.device)
    with torch.no_grad():
        d = (rm.head(xc, u) - rm.head(xr, u)).cpu().numpy()
    return (d > 0) + 0.5 * (d == 0)


def adapt_unseen(rm: RewardModel, records, features=None, **adapt_kw) -> RewardModel:
    """Adapt ``rm`` in place to every unseen user of ``records`` it does not know, on their train pairs."""
    recs = [r for r in records if r["user_group"] == "unseen" and r["split"] == "train" and r["user"] not in rm.users]
    if recs and not (rm.method == "bt"):
        rm.adapt_users(recs, features, **adapt_kw)
    elif recs:
        rm.users += sorted({r["user"] for r in recs})
    return rm


def rm_accuracy(rm: RewardModel, records, features=None, n_resamples: int = 2000, seed: int = 0,
                return_pairs: bool = False, **adapt_kw) -> dict:
    """RM accuracy on the test pairs of seen users and of unseen users, with 95% bootstrap CIs.

    Unseen users the model does not know yet are adapted (on a copy) from their train pairs, as in
    deployment: few-shot adaptation, then evaluation on their test pairs. ``return_pairs`` adds the
    per-pair correctness arrays (``correct_seen``, ``correct_unseen``, ordered like ``records``).
    """
    test = [r for r in records if r["split"] == "test"]
    unknown = {r["user"] for r in records if r["user_group"] == "unseen" and r["user"] not in rm.users}
    model = rm
    if unknown and rm.method != "bt":
        feat, rm._featurizer = rm._featurizer, None  # do not deep-copy a language model
        try:
            model = copy.deepcopy(rm)
        finally:
            rm._featurizer = feat
        model._featurizer = feat
        adapt_unseen(model, records, features, **adapt_kw)
    out = {}
    for group in ("seen", "unseen"):
        recs = [r for r in test if r["user_group"] == group]
        c = pair_correct(model, recs, features)
        lo, hi = bootstrap_ci(c, n_resamples, seed)
        out |= {f"rm_acc_{group}": float(c.mean()) if len(c) else float("nan"), f"ci_lo_{group}": lo,
                f"ci_hi_{group}": hi, f"n_{group}": int(len(c))}
        if return_pairs:
            out[f"correct_{group}"] = c
    return out


# ======================================================================================
# the model zoo of notebook 02
# ======================================================================================
def model_name(method: str, backbone: str, seed: int, prefix_train: bool) -> str:
    return f"{method}-{backbone}-{seed}-{'prefix' if prefix_train else 'full'}"


def train_zoo(records, features, task: str, out_root, methods=tuple(METHODS), seeds=(0,), prefix_options=(False,),
              hparams: dict | None = None, arch: dict | None = None, adapt_kw: dict | None = None,
              n_resamples: int = 2000, finetune: str | None = None, progress: bool = True):
    """Train every (method, seed, prefix_train) on one task and one backbone's features.

    Each model is adapted to the task's unseen users (few-shot, their train pairs), evaluated with
    :func:`rm_accuracy` and saved under ``out_root/<task>/<method>-<backbone>-<seed>-<full|prefix>``.
    ``features``: :class:`PairFeatures` of all ``records`` or, with ``finetune="lora"``, a featurizer.
    ``hparams`` go to :func:`train`; ``arch`` maps a method to its architecture options (e.g.
    ``{"lore": {"rank": 8}}``); ``adapt_kw`` go to :meth:`RewardModel.adapt_users`.
    Returns (index rows, per-pair correctness ``{(task, backbone, method, seed, prefix): {"seen": [...],
    "unseen": [...]}}``, the input of :func:`accuracy_table`).

    Index columns besides the accuracies: ``val_acc``, ``best_epoch``, ``val_rule``, ``n_val``, ``lr`` (the
    learning rate used, after any divergence retries), ``degenerate`` (the reason, "" when fine) and
    ``train_seconds``. A model that still diverges after the retries is skipped with a warning: its
    row has ``degenerate = "diverged: ..."``, NaN accuracies, ``dir = ""``; nothing is saved and it has
    no per-pair correctness.
    """
    methods = check_methods(methods, arch)  # before any training: a typo fails at once
    hparams, arch, adapt_kw = dict(hparams or {}), dict(arch or {}), dict(adapt_kw or {})
    rows, correct = [], {}
    grid = [(m, s, p) for m in methods for s in seeds for p in prefix_options if not (finetune and p)]
    for method, seed, prefix in tqdm(grid, desc=f"reward models [{task}]", disable=not progress):
        backbone = (features.backbone if isinstance(features, PairFeatures) else features.name) + \
            ("+lora" if finetune else "")
        name, t0 = model_name(method, backbone, seed, prefix), time.time()
        row = {"task": task, "method": method, "backbone": backbone, "seed": seed, "prefix_train": prefix}
        try:
            rm = train(method, records, features, seed=seed, prefix_train=prefix, finetune=finetune, progress=False,
                       task=task, **hparams, **arch.get(method, {}))
        except FloatingPointError as e:
            warnings.warn(f"reward model {task}/{name} skipped: {e}", stacklevel=2)
            nan = float("nan")
            rows.append(row | {"dir": "", **{f"{k}_{g}": nan for g in ("seen", "unseen") for k in ("rm_acc", "ci_lo", "ci_hi")},
                               "n_seen": 0, "n_unseen": 0, "val_acc": nan, "best_epoch": None, "val_rule": None,
                               "n_val": None, "lr": None, "degenerate": f"diverged: {e}",
                               "train_seconds": round(time.time() - t0, 3)})
            continue
        pf = features if finetune is None else PairFeatures.compute(rm.featurizer, records, progress=False)
        adapt_unseen(rm, records, pf, **adapt_kw)
        acc = rm_accuracy(rm, records, pf, n_resamples=n_resamples, seed=seed, return_pairs=True)
        correct[(task, backbone, method, seed, prefix)] = {"seen": acc.pop("correct_seen"),
                                                           "unseen": acc.pop("correct_unseen")}
        rm.metrics |= acc
        rm.save(Path(out_root) / task / name)
        m = rm.metrics
        rows.append(row | {"dir": f"{task}/{name}", **acc, "val_acc": m.get("val_acc"), "best_epoch": m.get("best_epoch"),
                           "val_rule": m.get("val_rule"), "n_val": m.get("n_val"), "lr": rm.train_hparams.get("lr"),
                           "degenerate": m.get("degenerate", ""), "train_seconds": m["train_seconds"]})
    return rows, correct


def train_zoos(jobs: list[dict], n_jobs: int = 1, progress: bool = True):
    """:func:`train_zoo` for each job (a dict of its keyword arguments), in ``n_jobs`` processes.

    Every model trains single-threaded from its own seed, so the models, the index rows (apart from
    wall-clock ``train_seconds``) and the per-pair correctness do not depend on ``n_jobs`` (tested):
    the heads are tiny, and two processes on two cores halve the zoo's wall time where two threads
    would only synchronise. Returns (index rows, per-pair correctness) in the order of ``jobs``.
    """
    if n_jobs == 1:
        torch.set_num_threads(1)
        results = [train_zoo(**job, progress=progress) for job in jobs]
    else:
        from joblib import Parallel, delayed

        gen = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_train_zoo_quiet)(job) for job in jobs)
        results = list(tqdm(gen, total=len(jobs), disable=not progress, desc=f"reward-model zoos ({n_jobs} processes)"))
        for row in (r for rs, _ in results for r in rs if flagged(r["degenerate"])):  # workers' warnings are lost
            warnings.warn(f"reward model {row['method']} (backbone {row['backbone']}, task {row['task']}, seed "
                          f"{row['seed']}, prefix_train {row['prefix_train']}): {row['degenerate']}", stacklevel=2)
    rows, correct = [], {}
    for r, c in results:
        rows += r
        correct |= c
    return rows, correct


def _train_zoo_quiet(job: dict):
    torch.set_num_threads(1)
    with warnings.catch_warnings():  # train_zoos repeats the flagged rows' warnings in the parent
        warnings.simplefilter("ignore")
        return train_zoo(**job, progress=False)


def flagged(reason) -> bool:
    """Whether an index row's ``degenerate`` entry flags the model (a non-empty reason; CSV: NaN = "")."""
    return isinstance(reason, str) and reason != ""


def accuracy_table(index, correct, n_resamples: int = 2000, seed: int = 0):
    """One row per (task, method, backbone, prefix_train): RM accuracy averaged over its unflagged seeds
    (``seeds`` of them; ``degenerate`` = how many seeds were flagged or skipped, see the index for
    why; NaN accuracy when none is left), with a 95% bootstrap CI over test pairs of the seed-averaged
    per-pair correctness, and mean training time."""
    import pandas as pd

    rows = []
    for key, g in index.groupby(["task", "method", "backbone", "prefix_train"], sort=False):
        bad = g["degenerate"].map(flagged) if "degenerate" in g else pd.Series(False, index=g.index)
        ok = g[~bad.astype(bool)]
        row = dict(zip(["task", "method", "backbone", "prefix_train"], key), seeds=len(ok), degenerate=int(bad.sum()))
        for group in ("seen", "unseen"):
            cs = [correct[(r.task, r.backbone, r.method, r.seed, r.prefix_train)][group] for r in ok.itertuples()]
            c = np.mean(cs, 0) if cs else np.zeros(0)
            lo, hi = bootstrap_ci(c, n_resamples, seed)
            row |= {f"rm_acc_{group}": float(np.mean(c)) if np.size(c) else float("nan"), f"ci_lo_{group}": lo,
                    f"ci_hi_{group}": hi}
        row["train_seconds"] = float(g.train_seconds.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def plot_accuracy(table, prefix_train: bool = False):
    """Bar plot of RM accuracy (seen / unseen users) per task, method and backbone, with 95% CIs."""
    import matplotlib.pyplot as plt

    t = table[table.prefix_train == prefix_train]
    tasks, methods, backbones = list(dict.fromkeys(t.task)), list(dict.fromkeys(t.method)), list(dict.fromkeys(t.backbone))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6), squeeze=False, sharey=True)
    width = 0.8 / max(len(backbones), 1)
    for j, task in enumerate(tasks):
        for i, group in enumerate(("seen", "unseen")):
            ax = axes[i, j]
            for b, bb in enumerate(backbones):
                s = t[(t.task == task) & (t.backbone == bb)].set_index("method").reindex(methods)
                y = s[f"rm_acc_{group}"].to_numpy(float)
                err = np.stack([y - s[f"ci_lo_{group}"].to_numpy(float), s[f"ci_hi_{group}"].to_numpy(float) - y])
                ax.bar(np.arange(len(methods)) + (b - (len(backbones) - 1) / 2) * width, y, width, yerr=err,
                       capsize=2, label=bb)
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_xticks(np.arange(len(methods)), methods, rotation=35, ha="right")
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{task} - {group} users")
            if j == 0:
                ax.set_ylabel("RM accuracy")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, title="backbone", loc="upper center", ncol=len(backbones), bbox_to_anchor=(0.5, 1.06))
    return fig
