"""Training reward models (:func:`train`): frozen features or LoRA fine-tuning of the backbone, through the one
optimisation loop of lib/rewards/loop.py (:func:`fit_loop`, also used by few-shot adaptation,
:meth:`RewardModel.adapt_users`), the validation rule, the checks of a trained model (divergence in the loop,
:func:`_degenerate` after it) and of the methods and options asked for (:func:`check_methods`)."""
from __future__ import annotations

import copy
import inspect
import math
import time
import warnings

import torch

from ..core.io import seed_everything
from ..core.models import pad_batch
from ..core.progress import bar
from .base import RewardModel
from .heads import METHODS, VPL
from .loop import bt_loss, fit_loop
from .pairs import PairFeatures, _check_finite


def device_of(device=None) -> torch.device:
    """``device`` as a torch device; None: accelerate's device (the GPU when present)."""
    if device is not None:
        return torch.device(device)
    from accelerate import PartialState

    return PartialState().device


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


def train(method: str, records, features, *, seed: int = 0, epochs: int = 200, batch_size: int = 64,
          lr: float = 1e-3, weight_decay: float = 1e-2, val_frac: float = 0.15, min_val: int = 8,
          fixed_epochs: int = 50, patience: int = 20, retries: int = 2, prefix_train: bool = False,
          n_prefix: int = 4, cache_dir=None, device=None, progress: bool = True, diverge_factor: float = 20.0,
          finetune: str | None = None, lora_r: int = 8, max_grad_norm: float | None = 1.0, task: str | None = None,
          **arch) -> RewardModel:
    """Train a personalized reward model with the Bradley-Terry loss ``-log sigmoid(r(x, y+) - r(x, y-))``.

    ``records``: preference pairs (lib/data/preflamp.py schema); the seen users' train pairs are used.
    Validation rule (module docstring): ``round(val_frac * N)`` of them, drawn across users and never a
    user's last pair, are held out and the epoch >= 1 of lowest validation loss is kept (``patience``);
    with fewer than ``min_val`` such pairs every pair trains ``min(epochs, fixed_epochs)`` epochs
    (``val_rule`` "fixed_epochs", ``val_acc`` NaN). ``features``: a :class:`PairFeatures` or a featurizer
    of lib/rewards/features.py (features are then computed, cached under ``cache_dir``). AdamW, mini-batches,
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
        dev = device_of(device)

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
        loss = bt_loss(d).item()
        if not math.isfinite(loss):
            raise FloatingPointError(f"train {method}: validation loss is {loss} (lr {hp['lr']:g})")
        return loss, (d > 0).float().mean().item()

    def batches():
        rm.train()
        order = torch.randperm(len(u), generator=g).to(dev)
        for s in range(0, len(order), hp["batch_size"]):
            b = order[s : s + hp["batch_size"]]
            yield rm.pair_logits(xc[b], xr[b], u[b], pair[b])

    best = {"loss": math.inf, "state": None, "epoch": 0, "bad": 0}

    def end_epoch(epoch, loss):  # VPL's latents, then early stopping on the validation loss
        rm.refresh()
        if not val:
            return False
        vl, vacc = val_loss()
        pbar.set_postfix(train=f"{loss:.3f}", val=f"{vl:.3f}", val_acc=f"{vacc:.2f}")
        if vl < best["loss"] - 1e-5:  # epoch 1 always qualifies: the initial heads are no model
            best.update(loss=vl, state=copy.deepcopy(rm.state_dict()), epoch=epoch, bad=0)
            return False
        best["bad"] += 1
        return best["bad"] >= hp["patience"]

    opt = torch.optim.AdamW(rm.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    init = [p.detach().clone() for p in rm.parameters()]
    init_loss = val_loss()[0] if val else float("nan")
    n_epochs = hp["epochs"] if val else min(hp["epochs"], hp["fixed_epochs"])
    pbar = bar(range(1, n_epochs + 1), progress=progress, desc=f"train {method}", leave=False)
    epoch = len(fit_loop(opt, pbar, batches, max_grad_norm=hp["max_grad_norm"], diverge_factor=diverge_factor,
                         label=f"train {method}", end_epoch=end_epoch))
    if val and best["state"] is not None:
        rm.load_state_dict(best["state"])
    best_epoch = best["epoch"] if val else epoch
    rm.eval()
    rm.train_hparams = hp | {"n_train": len(tr), "n_val": len(val), "n_users": len(users),
                             "val_rule": "holdout" if val else "fixed_epochs"}
    rm.metrics = {"best_epoch": best_epoch, "epochs_run": epoch, "val_rule": rm.train_hparams["val_rule"],
                  "n_val": len(val), "val_loss": (best["loss"] if best["state"] is not None else init_loss) if val
                  else float("nan"), "val_acc": val_loss()[1] if val else float("nan"), "init_val_loss": init_loss}
    _calibrate(rm, pf, tr, u_tr)
    where = (vc, vr, vu, "validation") if val else (xc[: len(tr)], xr[: len(tr)], u_tr, "training")
    rm.metrics["degenerate"] = _degenerate(rm, init, *where)  # no epoch run: never left its initial weights
    return rm


# --- LoRA fine-tuned backbone -------------------------------------------------------------
def _lm_last_with_grad(feat, seqs):
    """Last-token hidden state of token sequences, with gradients (right padding)."""
    lens = torch.tensor([len(s) for s in seqs])
    ids, mask = pad_batch(seqs, feat.tok.pad_token_id or 0, "right", feat.device)
    h = feat.decoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return h[torch.arange(len(seqs)), lens.to(h.device) - 1].float()


_FROZEN: dict = {}  # (featurizer id, records) -> (featurizer, PairFeatures): see _frozen_features


def _frozen_features(feat, recs, progress: bool) -> PairFeatures:
    """The frozen backbone's features of ``recs`` (the LoRA heads' standardisation statistics), computed once per
    featurizer and records in this process: every method and seed of a zoo fine-tunes from the same ones."""
    key = (id(feat), hash(tuple((r["pair_id"], r["prompt"], r["chosen"], r["rejected"]) for r in recs)))
    hit = _FROZEN.get(key)
    if hit is None or hit[0] is not feat:  # the featurizer is kept in the value: its id is not reused meanwhile
        if len(_FROZEN) >= 4:
            _FROZEN.clear()
        hit = _FROZEN[key] = (feat, PairFeatures.compute(feat, recs, progress=progress))
    return hit[1]


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
    pf = _frozen_features(feat, recs, progress)  # frozen statistics for standardisation
    rm = METHODS[method](feat.name, feat.kind, feat.dim, users, **arch)
    dev = device_of(device) if device is not None else feat.device
    model = get_peft_model(copy.deepcopy(feat.model), LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                                                 target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
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
    g = torch.Generator().manual_seed(hp["seed"])

    def batches():
        order = torch.randperm(len(recs), generator=g)
        for s in range(0, len(order), hp["batch_size"]):
            b = order[s : s + hp["batch_size"]].tolist()
            h = _lm_last_with_grad(ft, [seqs[i][0] for i in b] + [seqs[i][1] for i in b])
            yield rm.pair_logits(h[: len(b)], h[len(b):], u_all[b], torch.tensor(b, device=dev))

    model.train()
    epochs = bar(range(1, hp["epochs"] + 1), progress=progress, desc=f"train {method}+lora", leave=False)
    losses = fit_loop(opt, epochs, batches, max_grad_norm=hp.get("max_grad_norm"), diverge_factor=diverge_factor,
                      label=f"train {method}+lora")
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


def check_methods(methods, arch: dict | None = None) -> list[str]:
    """``methods`` as a list, or ``ValueError`` up front (before any features or training) naming unknown
    method names and listing the known ones (:data:`METHODS`). ``arch`` (method -> architecture keywords,
    as :func:`train_zoo` takes it) is checked too: every key must be a known method and every keyword one
    that the method's constructor or :func:`train` names (others would be silently ignored)."""
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
        try:  # the values too (sizes >= 1, ...): a head on 2-d features of one user costs nothing
            METHODS[m]("check", "lm_last", 2, ["u"], **{k: v for k, v in kw.items() if k in own})
        except ValueError as e:
            raise ValueError(f"arch[{m!r}]: {e}") from None
    return methods
