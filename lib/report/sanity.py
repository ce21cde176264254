"""Is a finished run sane? Checks every artifact of a profile for the degenerate cases a number must not hide.

    python -m lib.report.sanity --profile lamp-cpu [--root DIR]     # exit 1 when a check fails

Run after ``make all`` (``make test-lamp-cpu`` runs it on a real-layout fixture). Each check is one row
(artifact, check, ok, detail); a failed check names the artifact and what is wrong. It reads only
the files the notebooks wrote: Pref-LaMP (01), the RM index (02), the decodes (03), policy accuracy
(04), generations (05) and the summary (06); a profile whose ``stages`` leave out 01, 03 and 05 (tldr-real) is
checked on what it runs.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys

import pandas as pd

from ..core.config import paths


def _preflamp(P) -> list[tuple]:
    from ..data.preflamp import load_manifest, load_pairs

    man = load_manifest(P.preflamp)
    rows = [("preflamp/manifest.json", "records its corpus", bool(man.get("corpus")), man.get("corpus"))]
    pairs = pd.DataFrame(load_pairs(P.preflamp))
    for task in man["params"]["tasks"]:
        p = pairs[pairs.task == task] if len(pairs) else pairs
        where = f"preflamp/{task}"
        rows.append((where, "has pairs", len(p) > 0, f"{len(p)} pairs"))
        if not len(p):
            continue
        per_user = p.groupby("user").split.agg(lambda s: {"train", "test"} <= set(s))
        rows.append((where, "every user has a train and a test pair", bool(per_user.all()),
                     f"{int((~per_user).sum())} of {len(per_user)} users lack one"))
        same = (p.chosen.str.lower().str.split().str.join(" ") == p.rejected.str.lower().str.split().str.join(" "))
        rows.append((where, "no pair with rejected == chosen", not same.any(), f"{int(same.sum())} such pairs"))
        leak = [c.strip().lower() in q.lower() for c, q in zip(p.chosen, p.prompt)]
        rows.append((where, "no prompt contains its chosen text", not any(leak), f"{sum(leak)} such pairs"))
        groups = set(p.user_group)
        rows.append((where, "seen and unseen users", groups == {"seen", "unseen"}, sorted(groups)))
    return rows


def _rms(P) -> list[tuple]:
    from ..rewards import read_rm_index

    idx = read_rm_index(P.rms / "index.csv")
    ok = idx[idx.degenerate == ""]
    rows = [("rms/index.csv", "has reward models", len(idx) > 0, f"{len(idx)} models, {len(idx) - len(ok)} flagged")]
    for task, g in idx.groupby("task"):
        good = g[g.degenerate == ""]
        acc = good.rm_acc_seen
        rows.append((f"rms/{task}", "at least one model not flagged degenerate", len(good) > 0,
                     f"{len(good)} of {len(g)}"))
        rows.append((f"rms/{task}", "seen RM accuracy defined and in [0, 1]",
                     bool(len(acc)) and bool(acc.between(0, 1).all()), f"{acc.isna().sum()} NaN"))
        rows.append((f"rms/{task}", "RM accuracy not constant across models", acc.nunique() > 1,
                     f"{acc.nunique()} distinct values"))
    return rows


def _decodes(P) -> list[tuple]:
    dec = pd.read_csv(P.rgd / "decodes.csv")
    return [("rgd/decodes.csv", "has decodes", len(dec) > 0, f"{len(dec)} rows")]


def _policy_accuracy(P) -> list[tuple]:
    from ..core.schema import read_policy_accuracy

    pa = read_policy_accuracy(P.eval / "policy_accuracy.csv")
    vals = pa.policy_acc.dropna()
    return [("eval/policy_accuracy.csv", "policy accuracies in [0, 1]", len(vals) > 0 and bool(vals.between(0, 1).all()),
             f"{len(vals)} values, {pa.policy_acc.isna().sum()} NaN")]


def _generations(P) -> list[tuple]:
    from ..core.schema import read_results

    rows = []
    gen = read_results(P.eval / "generations.csv")
    systems = set(gen.system)
    rows.append(("eval/generations.csv", "base, icl and rgd generations", {"base", "icl", "rgd"} <= systems, sorted(systems)))
    empty = gen.generation.fillna("").str.strip().eq("")
    rows.append(("eval/generations.csv", "at most half the generations empty", empty.mean() <= 0.5,
                 f"{empty.mean():.0%} empty"))
    r = gen.rouge1
    rows.append(("eval/generations.csv", "ROUGE-1 in [0, 1], not all zero", bool(r.between(0, 1).all()) and r.max() > 0,
                 f"mean {r.mean():.3f}"))
    rows.append(("eval/generations.csv", "val and test query halves", set(gen.half) == {"val", "test"}, sorted(set(gen.half))))
    return rows


def _summary(P, has_lamp: bool = True) -> list[tuple]:
    from ..data.preflamp import load_manifest

    corpus = load_manifest(P.preflamp).get("corpus") if has_lamp else "none"
    f = P.figures / "summary.md"
    text = f.read_text(encoding="utf-8") if f.exists() else ""
    synthetic_claim = "synthetic users" in text
    named = f"corpus **{corpus}**" in text if has_lamp else "preference sets only (no Pref-LaMP)" in text
    return [("figures/summary.md", "exists", bool(text), str(f)),
            ("figures/summary.md", "names the corpus", named, corpus),
            ("figures/summary.md", "synthetic disclaimer iff synthetic corpus", synthetic_claim == (corpus == "synthetic"),
             f"disclaimer {'present' if synthetic_claim else 'absent'}")]


def check_run(profile: str, root=None, runs=None) -> pd.DataFrame:
    """One row per check; a check whose artifact is missing or unreadable fails with the error as detail."""
    from ..core.config import STAGES, load_profile, stages

    P = paths(profile, root)
    if runs is None:  # the profile's notebooks (its `stages`); a profile with no config in this clone: all of them
        try:
            runs = stages(load_profile(profile))
        except FileNotFoundError:
            runs = STAGES
    has_lamp = "01_build_pref_lamp" in runs
    parts = ([_preflamp] if has_lamp else []) + [_rms] + ([_decodes] if "03_reward_guided_decoding" in runs else []) \
        + [_policy_accuracy] + ([_generations] if "05_generation" in runs else []) \
        + [functools.partial(_summary, has_lamp=has_lamp)]
    rows = []
    for part in parts:
        try:
            rows += part(P)
        except Exception as e:  # a missing or malformed artifact is a failed check, reported with its cause
            name = getattr(part, "func", part).__name__.strip("_")
            rows.append((name, "readable", False, f"{type(e).__name__}: {e}"))
    return pd.DataFrame(rows, columns=["artifact", "check", "ok", "detail"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--root", help="data root (default: $PRC_ROOT or the repository)")
    a = ap.parse_args(argv)
    df = check_run(a.profile, a.root)
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(df.to_string(index=False))
    bad = df[~df.ok]
    print(f"[sanity] profile {a.profile}: {len(df) - len(bad)} of {len(df)} checks passed"
          + (f"; FAILED: {json.dumps(bad.check.tolist())}" if len(bad) else ""))
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main())
