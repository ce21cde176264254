"""The :class:`RewardModel` interface every method implements: standardised features, user rows, calibration,
few-shot adaptation of unseen users, scoring text, its decoding path, saving. The methods are in heads.py;
the contract is in the package docstring (lib/rewards/__init__.py)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..core.io import atomic_dir, seed_everything, write_json
from ..core.models import same_tokenizer
from .loop import fit_loop
from .pairs import PairFeatures


class RewardModel(nn.Module):
    """A reward head on standardised features of a frozen (or LoRA-tuned) backbone; subclasses define
    ``_reward(x, u)`` and their per-user tables (the contract is in the package docstring)."""

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

    def adapt_users(self, records, features=None, **kw) -> RewardModel:
        """:meth:`adapt` for every user of ``records`` at once (their losses are independent): the new users'
        rows are fitted by :meth:`_fit_new_users` (keywords ``kw``), then appended to :attr:`users`."""
        new = sorted({r["user"] for r in records})
        known = [u for u in new if u in self.users]
        if known:
            raise ValueError(f"adapt: user(s) {known[:5]} already known to this {self.method} model")
        self._fit_new_users(new, records, features, **kw)
        self.users += new
        return self

    def _fit_new_users(self, new: list[str], records, features, steps: int = 200, lr: float = 0.05,
                       l2: float = 0.01, seed: int = 0):
        """Append fitted rows for the users ``new`` to every user table. Loss per new user: mean BT loss on
        their pairs + ``l2`` * ||rows - prior||^2, minimised by Adam for a fixed number of full-batch
        ``steps`` (few pairs: no validation split) in :func:`lib.rewards.loop.fit_loop`."""
        if not self.user_tables:  # bt: nothing user-specific
            return
        xc, xr = self._pair_tensors(records, features)
        seed_everything(seed)
        n0 = len(self.users)
        u = torch.tensor([n0 + new.index(r["user"]) for r in records], device=self.mu.device)
        w = 1.0 / torch.bincount(u - n0).float()[u - n0]  # per-user mean
        prior = {k: self._new_rows(k, len(new)) for k in self.user_tables}
        rows = {k: v.clone().requires_grad_(True) for k, v in prior.items()}

        def full_batch():
            tables = {k: torch.cat([getattr(self, k).detach(), rows[k]]) for k in self.user_tables}
            d = torch.func.functional_call(self, tables, (xc, u)) - torch.func.functional_call(self, tables, (xr, u))
            yield d, l2 * sum(((rows[k] - prior[k]) ** 2).sum() for k in rows)

        fit_loop(torch.optim.Adam(rows.values(), lr=lr), range(steps), full_batch, weight=w)
        for k in self.user_tables:
            setattr(self, k, nn.Parameter(torch.cat([getattr(self, k).detach(), rows[k].detach()])))

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
        """``config.json`` + ``model.safetensors`` (:data:`WEIGHTS`; + ``lora/`` for a fine-tuned backbone),
        written atomically. :func:`lib.rewards.load_reward_model` reads it back (and the ``model.pt`` of older
        releases, with a FutureWarning)."""
        from safetensors.torch import save_file

        with atomic_dir(directory) as tmp:
            write_json(tmp / "config.json", self.config())
            save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, tmp / WEIGHTS,
                      metadata={"format": "pt", "method": self.method})
            if self.finetuned:
                self._featurizer.model.save_pretrained(tmp / "lora")
        return Path(directory)


# --- the weights file ---------------------------------------------------------------------------
WEIGHTS = "model.safetensors"  # what RewardModel.save writes
LEGACY_WEIGHTS = "model.pt"  # what releases before safetensors wrote (a torch pickle); still read, with a warning
_warned_legacy = False


def weights_file(directory) -> Path | None:
    """The weights file of a saved reward model folder (:data:`WEIGHTS`, else :data:`LEGACY_WEIGHTS`), or None."""
    for name in (WEIGHTS, LEGACY_WEIGHTS):
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


def read_weights(directory) -> dict[str, torch.Tensor]:
    """The state dict saved in ``directory`` (CPU tensors). A ``model.pt`` of an older release is read with
    ``torch.load(weights_only=True)`` and one FutureWarning per process (a zoo has hundreds of folders):
    re-save it with ``load_reward_model(d).save(d)``; reading it will be removed in a later release."""
    global _warned_legacy
    f = weights_file(directory)
    if f is None:
        raise FileNotFoundError(f"{directory}: no {WEIGHTS} (nor the older {LEGACY_WEIGHTS}): not a saved reward model")
    if f.name == WEIGHTS:
        from safetensors.torch import load_file

        try:
            return load_file(f, device="cpu")
        except Exception as e:  # noqa: BLE001 - safetensors' own errors do not name the file
            raise ValueError(f"{f}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    if not _warned_legacy:
        _warned_legacy = True
        warnings.warn(f"{f}: reward models saved as {LEGACY_WEIGHTS} (releases before safetensors) still load, but "
                      f"reading them will be removed; convert a folder d with load_reward_model(d).save(d), which "
                      f"writes {WEIGHTS} (this warning is shown once per process)", FutureWarning, stacklevel=3)
    return torch.load(f, map_location="cpu", weights_only=True)
