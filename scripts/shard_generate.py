"""Notebook 05's generations (base / ICL / RGD, scored with ROUGE), sharded by user across processes or GPUs.

    # one process
    python scripts/shard_generate.py --profile smoke
    # N processes: GPUs, or CPU processes over gloo when there is no GPU (accelerate launch or torchrun)
    accelerate launch --multi_gpu --num_processes 8 scripts/shard_generate.py --profile paper
    # then the figures and tables (notebook 06) from that file
    make figures PROFILE=paper

What it computes is notebook 05's generation cell, through the same functions
(:func:`lib.evaluation.generation.generate_policy_rows` per policy, :func:`lib.evaluation.generation.finish_generations`):
the profile's notebook-05 parameters (the notebook's defaults merged with ``configs/<profile>.yaml`` by
:func:`lib.core.pipeline.parameters_for`, the Makefile's checks), the profile's Pref-LaMP queries, and the
reward models of the profile's RM index (``rms/index.csv``, named by its unique ``rm`` column,
adapted to unseen users, selected per task and policy by the profile's ``rm_*`` filters).

Output: ``paths(profile).eval / "generations.csv"`` (or ``--out``), byte-identical to the file notebook
05 writes and to that of one process, whatever the number of processes. The units of sharding are each
task's fixed user blocks (in which notebook 05 batches); each rank writes its rows to
``<out stem>.shards/rows.shard<rank>-of-<N>.jsonl``, rank 0 merges them into ``rows.jsonl`` there and
writes the CSV.

Make: the file is the target of ``make generation``. Written after its inputs (notebook 05, the RM index,
the profile, lib/), it is up to date for Make, so ``make figures`` goes straight to notebook 06. Should Make
re-run notebook 05 anyway (an input edited later), the notebook finds every generation in the shared cache
(``data/cache/generation``, keyed by what determines each output) and only re-scores: same file. To keep
Make from re-running it after such an edit, ``touch data/processed/<profile>/eval/generations.csv``.

``--policy`` narrows the profile's policies (the output then holds only theirs, so it needs ``--out``);
``--model-dir`` loads the single policy from a local HF folder instead of the model registry (tests).
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pandas as pd
import torch

from lib import rewards
from lib.core import models, pipeline, schema
from lib.core.config import paths
from lib.core.io import seed_everything
from lib.evaluation import generation, shard

NOTEBOOK = "05_generation"
SORT_BY = ("task", "user", "query_id", "system", "rm", "param")  # shard merge; ties keep the policies' order


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--configs", help="folder of <profile>.yaml (default: configs/)")
    ap.add_argument("--policy", nargs="+", help="only these policies (default: the profile's); needs --out")
    ap.add_argument("--model-dir", help="a local HF folder for the (single) policy instead of the registry (tests)")
    ap.add_argument("--out", help="output CSV (default: paths(profile).eval / 'generations.csv')")
    ap.add_argument("--threads", type=int, help="torch CPU threads per process (default: the profile's 'threads')")
    return ap.parse_args(argv)


def notebook_params(profile: str, configs_dir=None) -> dict:
    """Notebook 05's parameters for ``profile``: its declared defaults, overridden as papermill would."""
    declared = pipeline.declared_parameters(pipeline.notebook_path(NOTEBOOK))
    defaults = {k: ast.literal_eval(v) for k, v in declared.items()}
    return {**defaults, **pipeline.parameters_for(NOTEBOOK, profile, configs_dir)}


def load_policy(name: str, model_dir, device):
    if not model_dir:
        return models.load_causal_lm(name, device=device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval().requires_grad_(False)
    model.registry_name = name  # lib.decoding.rgd: reward models on the backbone `name` share the policy's forward
    return model, AutoTokenizer.from_pretrained(model_dir)


def task_blocks(queries: list[dict], params: dict) -> dict[str, tuple[str, list[str]]]:
    """The units of sharding: ``"<task>|<block>" -> (task, users)``, the fixed user blocks in which
    :func:`lib.evaluation.generation.evaluate` batches each task's queries (notebook 05 calls it once per task and
    policy). A process's share of a task is a union of whole blocks, which evaluate re-blocks the same
    way, so its batches, and every generation, are those of one process."""
    units = {}
    for task in params["tasks"]:
        users = [q["user"] for q in queries if q["task"] == task]
        for i, block in enumerate(generation.user_blocks(users, params["user_block"])):
            units[f"{task}|{i:06d}"] = (task, block)
    return units


def rows_path(out) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.shards") / "rows.jsonl"


def main(argv=None):
    a = parse(argv)
    params = notebook_params(a.profile, a.configs)
    policies = a.policy or params["policies"]
    if policies != params["policies"] and not a.out:
        raise SystemExit(f"--policy {policies} differs from the profile's {params['policies']}: pass --out "
                         "(eval/generations.csv must hold what notebook 05 writes)")
    if a.model_dir and len(policies) != 1:
        raise SystemExit(f"--model-dir serves one policy, not {policies}: pass --policy NAME")
    torch.set_num_threads(a.threads or params["threads"])
    seed_everything(params["seed"])
    st = shard.state()
    P = paths(a.profile)
    out = Path(a.out) if a.out else P.eval / "generations.csv"
    queries = generation.generation_queries(P, params)
    rm_index = rewards.read_rm_index(P.rms / "index.csv")
    units = task_blocks(queries, params)

    def work(my_units):
        keys = {(units[u][0], user) for u in my_units for user in units[u][1]}
        mine = [q for q in queries if (q["task"], str(q["user"])) in keys]
        rows = []
        for policy in policies if mine else []:
            model, tok = load_policy(policy, a.model_dir, st.device)
            rows += generation.generate_policy_rows(P, policy, model, tok, rm_index, params, queries=mine,
                                                  progress=st.is_main_process).to_dict("records")
            del model
        return rows

    rows = shard.run_sharded(work, sorted(units), rows_path(out), sort_by=SORT_BY, st=st)
    if st.is_main_process:
        df = pd.DataFrame(rows, columns=generation.ROW_COLUMNS)
        gen = generation.finish_generations([df], queries, params["seed"], params["val_frac"])
        schema.write_results(gen, out)
        print(f"[shard_generate] {len(gen)} rows of {policies} from {st.num_processes} process(es) -> {out}",
              flush=True)
    st.wait_for_everyone()


if __name__ == "__main__":
    main()
