"""Each reward model's ONE deployed setting (notebook 04 chooses it, notebook 05 decodes at it) and the
comparison at matched steering strength.

:func:`deployed_settings`: on the *val* half of notebook 04's pairs, each reward model's ``w`` with the best policy
accuracy under ``definition`` (default :data:`DEPLOY_DEFINITION`: the deployed decoder's smoothed likelihood),
``w = 0`` a candidate that wins ties; each method's pick among its seeds and prefix variants. :func:`read_deployed`
reads the artifact back for notebook 05 and checks that it was chosen under notebook 05's settings.
:func:`matched_kl` and :func:`kl_curves` use the measured steering KL of every (reward model, w).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import schema

# The deployment criterion: the deployed decoder's likelihood with the gold token added to the top-k support. The
# faithful likelihood (support = top-k) is reported beside it, but it cannot select: a response written by a user
# (or another policy) almost always holds a token outside a small policy's top-k, so both responses of a pair have
# likelihood 0 and tie at every w (88-100% of the smoke pairs; ``val_ties`` shows it per reward model).
DEPLOY_DEFINITION = "rgd_likelihood_smoothed"


def deployed_settings(pol_pairs: pd.DataFrame, rm_pairs: pd.DataFrame, definition: str = DEPLOY_DEFINITION,
                      normalise: bool = False) -> pd.DataFrame:
    """Each reward model's ONE deployment setting, chosen on the *val* half: the ``w`` with the highest policy
    accuracy under ``definition`` (``normalise``: length-normalised scores), seen and unseen users pooled (one
    setting per reward model, whoever the user); ties go to the smaller ``w``, so ``w = 0`` (the base policy)
    wins whenever the reward does not help on validation.

    One row per (task, policy, rm) with ``w`` (nominal, the units of the grid), ``step_scale``, ``w_decode`` =
    ``w / step_scale`` (the weight on the reward model's decoding reward that notebook 05 uses), ``val_acc``,
    ``val_base_acc`` (``w = 0``), ``val_ties`` (share of tied val pairs there: near 1, the criterion cannot select), ``val_kl`` (the measured steering strength there), ``n_val`` (pairs),
    ``method`` and ``method_pick``: True for the one reward model each method deploys (of its seeds and prefix
    variants the best ``val_acc``; ties: smaller ``w``, then the name).
    """
    by = ["task", "policy", "rm"]
    val = pol_pairs[(pol_pairs.half == "val") & (pol_pairs.definition == definition)
                    & (pol_pairs.normalise.astype(bool) == normalise)]
    if val.empty:
        raise ValueError(f"deployed_settings: no val-half outcomes for definition {definition!r}, normalise="
                         f"{normalise} (definitions scored: {sorted(pol_pairs.definition.unique())})")
    acc = val.assign(tie=val.correct == 0.5).groupby(by + ["w"], sort=True).agg(
        val_acc=("correct", "mean"), val_ties=("tie", "mean"), val_kl=("kl", "mean"),
        n_val=("pair_id", "nunique")).reset_index()
    base = acc[acc.w == 0].set_index(by).val_acc.rename("val_base_acc")
    acc = acc.sort_values(by + ["val_acc", "w"], ascending=[True] * 3 + [False, True], kind="stable")
    out = acc.groupby(by, sort=True).head(1).join(base, on=by).reset_index(drop=True)
    meta = rm_pairs.drop_duplicates(by).set_index(by)
    out = out.join(meta[["step_scale", "method"]], on=by)
    out["w_decode"] = out.w / out.step_scale
    out["definition"], out["normalise"] = definition, normalise
    rank = out.sort_values(["task", "policy", "method", "val_acc", "w", "rm"],
                           ascending=[True, True, True, False, True, True], kind="stable")
    out["method_pick"] = out.index.isin(rank.groupby(["task", "policy", "method"], sort=True).head(1).index)
    return out[by + ["method", "method_pick", "w", "step_scale", "w_decode", "val_acc", "val_base_acc", "val_ties",
                     "val_kl", "n_val", "definition", "normalise"]]


def at_deployed(pol_pairs: pd.DataFrame, deployed: pd.DataFrame) -> pd.DataFrame:
    """The per-pair policy outcomes of each reward model at its deployed ``w`` (every definition,
    normalisation, user group and half)."""
    m = pol_pairs.merge(deployed[["task", "policy", "rm", "w"]].rename(columns={"w": "w_deployed"}),
                        on=["task", "policy", "rm"], how="inner")
    return m[m.w == m.w_deployed].drop(columns="w_deployed")


def matched_kl(pol_pairs: pd.DataFrame, kl_targets) -> pd.DataFrame:
    """For each reward model and target KL, the grid ``w > 0`` whose mean val-half steering KL is nearest the
    target on a log scale: the comparison at equal steering strength (quality against KL from the base
    policy, as decoding-time methods are compared). One row per (task, policy, rm, kl_target) with ``w`` and
    ``val_kl`` (the KL reached); a reward model whose KL never leaves 0 has no row."""
    val = pol_pairs[(pol_pairs.half == "val") & (pol_pairs.w > 0)]
    kl = val.drop_duplicates(["task", "policy", "rm", "pair_id", "w"]).groupby(
        ["task", "policy", "rm", "w"], sort=True).kl.mean().rename("val_kl").reset_index()
    kl = kl[kl.val_kl > 0]
    rows = []
    for t in kl_targets:
        d = kl.assign(_dist=(np.log(kl.val_kl) - np.log(float(t))).abs(), kl_target=float(t))
        rows.append(d.sort_values(["task", "policy", "rm", "_dist", "w"], kind="stable")
                    .groupby(["task", "policy", "rm"], sort=True).head(1).drop(columns="_dist"))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["task", "policy", "rm", "w", "val_kl", "kl_target"])


def kl_curves(pol_pairs: pd.DataFrame, rm_index: pd.DataFrame) -> pd.DataFrame:
    """Mean steering KL per (task, policy, rm, w) on the val half, with the method: the KL-vs-w figure."""
    val = pol_pairs[pol_pairs.half == "val"].drop_duplicates(["task", "policy", "rm", "pair_id", "w"])
    out = val.groupby(["task", "policy", "rm", "w"], sort=True).kl.mean().reset_index()
    return out.merge(rm_index[["task", "rm", "method", "prefix_train"]], on=["task", "rm"], how="left")



def deployed_definition(P) -> str:
    """The criterion notebook 04 chose the deployed settings with (``definition`` in ``eval/deployed_settings.csv``):
    notebook 06 rebuilds notebook 04's tables under that one, not under the default, so that its deployed w are the
    ones notebook 05 decoded."""
    f = P.eval / "deployed_settings.csv"
    if not f.exists():
        raise FileNotFoundError(f"{f} does not exist: run notebook 04 first (make policy-accuracy)")
    defs = set(pd.read_csv(f, usecols=["definition"], dtype=str, keep_default_na=False).definition)
    if len(defs) != 1:
        raise ValueError(f"{f}: one deployment criterion expected in column 'definition', found {sorted(defs)}")
    return defs.pop()


DEPLOYED_COLUMNS = ("task", "policy", "rm", "method", "method_pick", "w", "w_decode", "calibrated", "rgd_k",
                    "rm_backbones")


def read_deployed(P, params: dict) -> pd.DataFrame:
    """Notebook 04's one deployed setting per reward model (``eval/deployed_settings.csv``, written by
    :func:`lib.evaluation.selection.deployed_settings`), checked against this notebook's settings: the deployed
    ``w`` was measured with notebook 04's candidates (``rgd_k``), reward units (``calibrated``) and backbones,
    and decoding under other ones would not be that setting."""
    f = P.eval / "deployed_settings.csv"
    if not f.exists():
        raise FileNotFoundError(f"{f}: rgd_ws='deployed' decodes each reward model at the setting notebook 04 chose "
                                "on validation pairs; run notebook 04 first (make policy-accuracy), or pass a list of w")
    d = pd.read_csv(f)
    missing = [c for c in DEPLOYED_COLUMNS if c not in d]
    if missing:
        raise ValueError(f"{f}: columns {missing} missing (written by an older notebook 04? re-run it)")
    # the settings as notebook 04 wrote them (str(value)): pandas would read "None" (rm_backbones: null, the paper
    # profile's every-backbone setting) as a missing value and never match notebook 05's None
    agree = pd.read_csv(f, usecols=["calibrated", "rgd_k", "rm_backbones"], dtype=str, keep_default_na=False)
    for key in ("calibrated", "rgd_k", "rm_backbones"):
        ran = set(agree[key])
        if ran != {str(params[key])}:
            raise ValueError(f"{f}: notebook 04 chose the deployed settings with {key}={sorted(ran)}, notebook 05 "
                             f"runs with {key}={params[key]!r}; use the same value in both")
    if not d.w_decode.map(lambda v: v == v and abs(v) != float("inf")).all():
        raise ValueError(f"{f}: a w_decode is not finite (rows {d.index[~d.w_decode.notna()].tolist()[:5]})")
    d["method_pick"] = d.method_pick.astype(str).str.lower().isin(["true", "1"])
    return d


def write_deployed(P, deployed: pd.DataFrame, calibrated: bool, rgd_k: int, rm_backbones) -> pd.DataFrame:
    """Notebook 04's deployed settings (:func:`deployed_settings`) as ``eval/deployed_settings.csv``, with the settings
    they were measured under (``calibrated``, ``rgd_k``, ``rm_backbones``) that :func:`read_deployed` checks against
    notebook 05's; returns the written table."""
    out = deployed.assign(calibrated=calibrated, rgd_k=rgd_k, rm_backbones=str(rm_backbones))
    schema.write_results(out, P.eval / "deployed_settings.csv")
    return out
