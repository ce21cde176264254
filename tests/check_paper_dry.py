"""Which routes of the paper profile did a ``paper-dry`` run take? Asserted from what its notebooks wrote.

    python tests/check_paper_dry.py --root DATA_ROOT [--profile paper-dry]     # exit 1 when a route is missing

``make test-paper-dry`` runs it after the run and ``lib.report.sanity``. Each check reads an artifact of the run
(nothing is recomputed) and asserts that a route the GPU run takes was exercised, not merely reached: the rows it
produced are there, for every policy, dataset and backbone it concerns. The RGD paths are the ones the run recorded:
``rgd_path`` in rgd/decodes.csv (notebook 03) and in eval/rm_pairs.parquet (notebook 04, per policy and reward
model); notebook 05 decodes the same reward models with the same policies, so a generation at ``w != 0`` by a
reward model is on the path notebook 04 recorded for that (policy, reward model). It prints one line per route.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.core import config

POLICIES = ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b"]
BACKBONE = "qwen2.5-0.5b"  # the frozen causal-LM reward backbone: the smallest policy (configs/paper.yaml)
LORA = f"{BACKBONE}+lora"
ENCODER = "minilm-l6"
LAMP_TASKS = ["LaMP-4", "LaMP-5", "LaMP-7"]
PREF_SETS = ["tldr", "prism", "personalllm"]
METHODS = ["bt", "individual", "user_embedding", "lore", "pal", "vpl"]


class RouteMissing(AssertionError):
    pass


def need(ok: bool, what: str) -> None:
    if not ok:
        raise RouteMissing(what)


def expected_path(policy: str, backbone: str) -> str:
    """The RGD path of a reward model on ``backbone`` beside ``policy`` in this profile (lib/decoding/rgd.py): its own
    hidden states (a, shared), another causal LM with the same tokenizer (b, separate; a LoRA fine-tuned backbone
    included) or another tokenizer (c, text)."""
    if backbone == ENCODER:
        return "text"
    return "shared" if backbone == policy else "separate"


def check_data(P) -> list[str]:
    lamp_man = json.loads((P.raw / "lamp" / "manifest.json").read_text())
    need(len(lamp_man) == 6 and all(v.get("source") == "local" for v in lamp_man.values()),
         f"data/raw/lamp/manifest.json: 6 LaMP files adopted as placed (source local), got {lamp_man}")
    from lib.data.preflamp import load_manifest, load_pairs

    man = load_manifest(P.preflamp)
    pairs = pd.DataFrame(load_pairs(P.preflamp))
    need(man["corpus"] == "lamp" and man["params"]["rejected"] == "policy" and sorted(set(pairs.task)) == LAMP_TASKS,
         f"preflamp: real-layout LaMP with policy negatives for {LAMP_TASKS} (corpus {man['corpus']!r})")
    need("qwen2.5-7b" in str(man.get("generator")) and "qwen2.5-7b" in str(man.get("paraphraser")),
         f"preflamp: rejected responses and LaMP-7 paraphrases by qwen2.5-7b (generator {man.get('generator')!r})")
    out = ["01: LaMP placed by hand, download: true adopted the 6 files (source local, sha256 recorded)",
           f"01: Pref-LaMP from real-layout LaMP, rejected = qwen2.5-7b zero-shot, LaMP-7 inputs paraphrased by it "
           f"({len(pairs)} pairs)"]
    for name in PREF_SETS:
        m = json.loads((P.prefsets / name / "manifest.json").read_text())
        recs = [json.loads(line) for line in (P.prefsets / name / "pairs.jsonl").read_text().splitlines()]
        need(len(recs) > 0 and {r["user_group"] for r in recs} == {"seen", "unseen"},
             f"prefsets/{name}: pairs of seen and unseen users")
        drops = m.get("drops", {})
        if name == "tldr":
            cnn = sum(r["prompt"].startswith("ARTICLE:") for r in recs)
            need(cnn > 0 and drops.get("empty_summary", 0) > 0,
                 f"prefsets/tldr: CNN/DM records (info.article, no post) loaded ({cnn}) and empty summaries skipped "
                 f"({drops.get('empty_summary', 0)})")
            out.append(f"02: TL;DR comparisons from local hub-schema files: {cnn} CNN/DM validation pairs "
                       f"(info.article, no post), {drops['empty_summary']} empty summary skipped")
        elif name == "prism":
            need(drops.get("single_response_turn", 0) > 0, "prefsets/prism: turns with one rated response skipped")
            out.append(f"02: PRISM utterances: {drops['single_response_turn']} single-response turns skipped")
        else:
            cols = pd.read_parquet(next((P.raw / "prefsets" / "personalllm").rglob("*.parquet"))).columns
            need(any(c.endswith("_model") for c in cols), "raw PersonalLLM file has response_<j>_model columns")
            out.append(f"02: PersonalLLM parquet with response_<j>_model columns (not reward models): {len(recs)} "
                       f"pairs of {len({r['user'] for r in recs})} simulated users")
    return out


def check_rms(P) -> list[str]:
    from lib.rewards import read_rm_index

    idx = read_rm_index(P.rms / "index.csv")
    ok = idx[idx.path.notna()]
    datasets = sorted(LAMP_TASKS + PREF_SETS)
    for bb in (BACKBONE, ENCODER, LORA):
        sub = ok[ok.backbone == bb]
        need(sorted(set(sub.task)) == datasets and sorted(set(sub.method)) == sorted(METHODS),
             f"rms/index.csv: reward models of all six methods on {bb} for every dataset "
             f"(have {sorted(set(sub.task))}, {sorted(set(sub.method))})")
    frozen = ok[ok.backbone != LORA]
    need(set(frozen.prefix_train.astype(str).str.lower()) == {"true", "false"},
         "rms/index.csv: full-response and prefix-trained reward models")
    cfg = [json.loads((Path(p) / "config.json").read_text()) for p in ok[ok.backbone == LORA].path]
    need(all(c["finetuned"] for c in cfg) and all((Path(p) / "lora").is_dir() for p in ok[ok.backbone == LORA].path),
         "rms: the +lora reward models are fine-tuned and saved with their LoRA adapters")
    return [f"02: {len(ok)} reward models, 6 methods x 6 datasets on {BACKBONE} and {ENCODER} (full and prefix)",
            f"02: LoRA reward models (lora_backbones) on {BACKBONE}: {len(cfg)}, each with its saved adapter"]


def check_decodes(P) -> list[str]:
    dec = pd.read_csv(P.rgd / "decodes.csv")
    got = dec[dec.w > 0].groupby("policy").rgd_path.agg(set).to_dict()
    need(got == {BACKBONE: {"shared"}, "qwen2.5-7b": {"separate"}},
         f"rgd/decodes.csv: notebook 03 decodes {BACKBONE} on path a and qwen2.5-7b on path b, got {got}")
    return ["03: RGD side by side, backbone qwen2.5-0.5b: path a (shared) for qwen2.5-0.5b, path b (separate) for "
            "qwen2.5-7b"]


def check_policy_accuracy(P, datasets=None) -> tuple[list[str], pd.DataFrame]:
    """Notebook 04 on ``datasets`` (its setting; None: every dataset): each policy scored every reward model on the
    path recorded for it, the one expected for its backbone."""
    from lib.core.schema import read_policy_accuracy

    rp = pd.read_parquet(P.eval / "rm_pairs.parquet")
    pa = read_policy_accuracy(P.eval / "policy_accuracy.csv")
    datasets = sorted(datasets or LAMP_TASKS + PREF_SETS)
    need(sorted(set(pa.policy)) == POLICIES, f"eval/policy_accuracy.csv: four policies, got {sorted(set(pa.policy))}")
    paths = rp.drop_duplicates(["task", "policy", "rm"])[["task", "policy", "rm", "backbone", "rgd_path"]]
    out = []
    for policy in POLICIES:
        sub = paths[paths.policy == policy]
        for bb in (BACKBONE, LORA, ENCODER):
            b = sub[sub.backbone == bb]
            want = expected_path(policy, bb)
            need(sorted(set(b.task)) == datasets and set(b.rgd_path) == {want},
                 f"eval/rm_pairs.parquet: {policy} scored {bb} reward models on path {want!r} on every dataset "
                 f"(datasets {sorted(set(b.task))}, paths {sorted(set(b.rgd_path))})")
        out.append(f"04: {policy}: policy accuracy on {len(datasets)} datasets with reward models on paths "
                   + ", ".join(sorted(set(sub.rgd_path))))
    need(set(pa.definition) == {"cumulative", "rgd_likelihood", "rgd_likelihood_smoothed"} and pa.w.nunique() == 8,
         "eval/policy_accuracy.csv: three definitions at the 8 step-calibrated w of paper.yaml")
    return out, paths


def check_generations(P, paths: pd.DataFrame, selected=None) -> list[str]:
    """Notebook 05: four policies, base / ICL (k 1-8) / RGD; every reward model it selects (``selected``: the rm names
    notebook 05's rm_* settings keep, lib.rewards.select_rms; None: all) that notebook 04 deployed at w != 0 on a
    task of 05 was decoded at exactly that w (rgd_rms: all), and the decodes cover path c (MiniLM) for every policy,
    path a (shared) for qwen2.5-0.5b and path b for the other sizes, and path b with a LoRA backbone for some policy."""
    from lib.core.schema import read_results

    gen = read_results(P.eval / "generations.csv")
    need(sorted(set(gen.model)) == POLICIES, f"eval/generations.csv: four policies, got {sorted(set(gen.model))}")
    icl = gen[gen.system == "icl"]
    need(sorted(icl.param.astype(float).unique()) == [1.0, 2.0, 4.0, 8.0], "eval/generations.csv: ICL k 1, 2, 4, 8")
    dep = pd.read_csv(P.eval / "deployed_settings.csv")
    dep = dep[dep.task.isin(set(gen.task)) & (dep.w != 0)].rename(columns={"policy": "model"})
    if selected is not None:
        dep = dep[dep.rm.isin(selected)]
    rgd = gen[(gen.system == "rgd") & (gen.param.astype(float) != 0)]
    decoded = rgd.groupby(["task", "model", "rm"]).param.agg(lambda s: set(s.astype(float))).to_dict()
    wrong = [(r.task, r.model, r.rm, r.w) for r in dep.itertuples() if decoded.get((r.task, r.model, r.rm)) != {r.w}]
    need(not wrong and len(decoded) == len(dep),
         f"eval/generations.csv: every reward model deployed at w != 0 by notebook 04 decoded at that w and no other "
         f"({len(dep)} deployed, {len(decoded)} decoded; e.g. {wrong[:3]})")
    rgd = rgd.merge(paths.rename(columns={"policy": "model"}), on=["task", "model", "rm"], how="left")
    need(rgd.rgd_path.notna().all(), "eval/generations.csv: every decoded reward model was scored by notebook 04")
    out = []
    for policy in POLICIES:
        got = set(rgd[rgd.model == policy].rgd_path)
        want = {"shared", "text"} if policy == BACKBONE else {"separate", "text"}
        need(want <= got, f"eval/generations.csv: {policy} decodes at its deployed w != 0 on paths {sorted(want)}, "
                          f"got {sorted(got)}")
        n = rgd[rgd.model == policy].groupby("rgd_path").size().to_dict()
        out.append(f"05: {policy}: base, ICL k 1-8, RGD at each reward model's deployed w on "
                   + ", ".join(f"{k} ({v} rows)" for k, v in sorted(n.items())))
    lora = rgd[rgd.backbone == LORA]
    need(len(lora) > 0 and set(lora.rgd_path) == {"separate"},
         "eval/generations.csv: a LoRA reward model guides decoding (path b, its own fine-tuned backbone)")
    out.append(f"05: LoRA reward models guide decoding on path b ({len(lora)} rows, policies "
               f"{', '.join(sorted(set(lora.model)))})")
    return out


def check_figures(P) -> list[str]:
    from lib.core import models

    best = pd.read_csv(P.figures / "generation_best.csv")
    sizes = best.drop_duplicates("model").set_index("model").params_m.to_dict()
    need(sorted(sizes) == POLICIES and all(sizes[m] == models.spec(m).params_m for m in POLICIES)
         and len(set(sizes.values())) == 4,
         f"figures/generation_best.csv: four policy sizes from the mapped checkpoints (models.spec), got {sizes}")
    need((P.figures / "rouge_vs_size.png").stat().st_size > 0, "figures/rouge_vs_size.png: the size plot")
    key = ["task", "policy", "rm"]
    shown = pd.read_csv(P.figures / "deployed_settings.csv").set_index(key).w.sort_index()
    used = pd.read_csv(P.eval / "deployed_settings.csv").set_index(key).w.sort_index()
    need(shown.equals(used), "figures/deployed_settings.csv: notebook 06 shows the deployed w notebook 04 chose and "
                             "notebook 05 decoded")
    return ["06: ROUGE vs policy size with four sizes (" + ", ".join(f"{sizes[m]:.3g}M" for m in POLICIES)
            + ") read from the mapped checkpoints",
            "06: the deployed settings shown are the ones notebook 04 chose (its criterion) and notebook 05 decoded"]


def check_run(profile: str = "paper-dry", root=None) -> list[str]:
    """The routes asserted, one line each; :class:`RouteMissing` names the first one missing."""
    from lib.core.pipeline import parameters_for
    from lib.rewards import read_rm_index, select_rms

    p05 = parameters_for("05_generation", profile)  # also registers the profile's model mapping (common.models)
    P = config.paths(profile, root)
    out = check_data(P) + check_rms(P) + check_decodes(P)
    lines, paths = check_policy_accuracy(P, parameters_for("04_policy_accuracy", profile).get("datasets"))
    idx = read_rm_index(P.rms / "index.csv")  # the reward models notebook 05 selects (its rm_* settings)
    selected = {rm for t in LAMP_TASKS for rm in select_rms(idx, t, p05.get("rm_methods"), None, p05.get("rm_seeds"),
                                                            p05.get("rm_prefix_train")).rm}
    return out + lines + check_generations(P, paths, selected) + check_figures(P)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the run's data root (DATA_ROOT)")
    ap.add_argument("--profile", default="paper-dry")
    a = ap.parse_args(argv)
    try:
        lines = check_run(a.profile, a.root)
    except (RouteMissing, FileNotFoundError, KeyError) as e:
        print(f"[paper-dry] route missing: {e}", file=sys.stderr)
        return 1
    print(f"[paper-dry] {len(lines)} routes of the paper profile exercised and asserted:")
    for line in lines:
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
