"""Behavioural evaluation (base / ICL / RGD generations + ROUGE) sharded by user across processes.

    # one process
    python scripts/shard_generate.py --profile smoke --model smollm2-135m
    # N processes (GPUs, or CPU processes over gloo when there is no GPU)
    accelerate launch --multi_gpu --num_processes N scripts/shard_generate.py --profile paper --model qwen2.5-7b

Writes the merged rows (lib.evaluate.ROW_COLUMNS, sorted by task, user, query, system) to --out,
by default ``paths(profile).eval / "generation" / "<model>.jsonl"``; the merge is byte-identical
whatever the number of processes. RGD runs when --rm-index names an index CSV of notebook 02.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lib import evaluate, models, shard
from lib.config import paths
from lib.io import read_jsonl

SORT_BY = ("task", "user", "query_id", "system", "rm", "param")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--model", default="smollm2-135m", help="registry name of the policy")
    ap.add_argument("--model-dir", help="a local HF folder instead of a registry model (tests)")
    ap.add_argument("--queries", help="queries JSONL (default: Pref-LaMP queries of the profile)")
    ap.add_argument("--task", help="only this task")
    ap.add_argument("--out", help="merged output JSONL")
    ap.add_argument("--cache-dir", help="generation cache (default: paths(profile).cache / 'generation')")
    ap.add_argument("--icl-ks", default="1,2,4")
    ap.add_argument("--retriever", default="bm25")
    ap.add_argument("--icl-max-tokens", type=int, default=512)
    ap.add_argument("--rm-index", help="index.csv of notebook 02: RGD with every reward model in it")
    ap.add_argument("--ws", default="0.5,1.0,2.0")
    ap.add_argument("--rgd-k", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rgd-batch-size", type=int, default=48, help="rows (query x reward model x w) per RGD batch")
    ap.add_argument("--user-block", type=int, default=8, help="users batched together (the sharding unit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    return ap.parse_args(argv)


def load_rms(index_csv, task):
    import pandas as pd

    from lib.rewards import load_reward_model

    idx = pd.read_csv(index_csv)
    if task:
        idx = idx[idx.task == task]
    return {str(Path(d).name): load_reward_model(Path(index_csv).parent / d) for d in sorted(idx["dir"])}


def main(argv=None):
    a = parse(argv)
    torch.set_num_threads(a.threads)
    st = shard.state()
    P = paths(a.profile)
    name = Path(a.model_dir).name if a.model_dir else a.model
    if a.model_dir:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(a.model_dir).to(st.device).eval()
        tok = AutoTokenizer.from_pretrained(a.model_dir)
    else:
        model, tok = models.load_causal_lm(a.model, device=st.device)
    if a.queries:
        queries = read_jsonl(a.queries)
    else:
        from lib.preflamp import load_queries

        queries = load_queries(P.preflamp)
    if a.task:
        queries = [q for q in queries if q["task"] == a.task]
    evaluate.check_queries(queries)
    rms, rgd_fn, tag = {}, None, ""
    if a.rm_index:
        rms = load_rms(a.rm_index, a.task)
        rgd_fn, tag = evaluate.rgd_adapter(name, k=a.rgd_k)
    out = Path(a.out) if a.out else P.eval / "generation" / f"{name}.jsonl"
    cache = Path(a.cache_dir) if a.cache_dir else P.cache / "generation"

    blocks = evaluate.user_blocks([q["user"] for q in queries], a.user_block)

    def work(block_ids):
        users = {u for i in block_ids for u in blocks[int(i)]}
        mine = [q for q in queries if str(q["user"]) in users]
        if not mine:
            return []
        df = evaluate.evaluate(mine, model, tok, name, icl_ks=[int(k) for k in a.icl_ks.split(",") if k],
                               icl_retriever=a.retriever, icl_max_tokens=a.icl_max_tokens, rms=rms,
                               ws=[float(w) for w in a.ws.split(",") if w], rgd_fn=rgd_fn, rgd_tag=tag,
                               max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, rgd_batch_size=a.rgd_batch_size,
                               cache_dir=cache,
                               seed=a.seed, user_block=a.user_block, progress=st.is_main_process)
        return df.to_dict("records")

    rows = shard.run_sharded(work, [f"{i:06d}" for i in range(len(blocks))], out, sort_by=SORT_BY, st=st)
    if st.is_main_process:
        print(f"[shard_generate] {len(rows)} rows from {st.num_processes} process(es) -> {out}", flush=True)


if __name__ == "__main__":
    main()
