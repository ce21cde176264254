"""The Bradley-Terry loss (:func:`bt_loss`) and the one optimisation loop (:func:`fit_loop`) that training
(:func:`lib.rewards.fit.train`), LoRA fine-tuning and few-shot adaptation (:meth:`RewardModel.adapt_users`)
share. It knows nothing of reward models: it minimises the loss of the margins a callable yields."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bt_loss(d: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley-Terry loss ``-log sigmoid(d)`` of reward margins ``d = r(chosen) - r(rejected)``: the mean
    over pairs, or the ``weight``-weighted sum."""
    loss = F.softplus(-d)
    return loss.mean() if weight is None else (weight * loss).sum()


def fit_loop(opt, epochs, batches, *, weight=None, max_grad_norm: float | None = None,
             diverge_factor: float | None = None, label: str = "train", end_epoch=None) -> list[float]:
    """The optimisation loop of every reward model: for each ``epoch`` of ``epochs``, for each
    ``(d, extra)`` that ``batches()`` yields (reward margins and an extra loss term, computed lazily, so
    ``batches`` may draw the epoch's order first), minimise ``bt_loss(d, weight) + extra`` with ``opt``,
    gradients clipped to ``max_grad_norm`` (None: off). Returns the pair-weighted mean loss per epoch.

    ``diverge_factor`` guards the run (None: unguarded, few-shot adaptation): a non-finite loss, or an
    epoch loss above ``diverge_factor`` times ``max(first epoch's, log 2)``, raises
    :class:`FloatingPointError` (``label`` names the run). ``end_epoch(epoch, loss)`` runs after each
    epoch; a true return value stops early.
    """
    params = [p for group in opt.param_groups for p in group["params"]]
    losses = []
    for epoch in epochs:
        tot, n = 0.0, 0
        for step, (d, extra) in enumerate(batches()):
            loss = bt_loss(d, weight) + extra
            if diverge_factor is not None and not torch.isfinite(loss):
                raise FloatingPointError(f"{label}: loss is {loss.item()} at epoch {epoch}, step {step} "
                                         f"(lr {opt.param_groups[0]['lr']:g}); check the features for NaN/inf")
            opt.zero_grad()
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            tot += loss.item() * len(d)
            n += len(d)
        losses.append(tot / n)
        if diverge_factor is not None and losses[-1] > diverge_factor * max(losses[0], math.log(2)):
            raise FloatingPointError(f"{label}: training loss diverged to {losses[-1]:.3g} at epoch {epoch} "
                                     f"(first epoch {losses[0]:.3g}, lr {opt.param_groups[0]['lr']:g})")
        if end_epoch is not None and end_epoch(epoch, losses[-1]):
            break
    return losses
