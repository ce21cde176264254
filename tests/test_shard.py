"""Sharding users across processes: notebook 05's generations with reward models in 2 CPU processes
(accelerate launch, gloo) == 1 process == lib.evaluation.generation.generate_policy_rows, byte for byte."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lib.core.io import read_jsonl, write_jsonl
from lib.evaluation import shard

from _tiny import WORDS, query, tiny_lm, tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
# blocks of 2 users: LaMP-4 [user0, user1] [user2, user3]; LaMP-5 [new0, new1] [user0, user1] [user2]
QUERY_USERS = {"LaMP-4": ["user0", "user1", "user2", "user3", "user0", "user2"],
               "LaMP-5": ["new0", "new1", "user0", "user1", "user2", "new1", "user0"]}
TASKS = tuple(QUERY_USERS)
POLICY = "tiny-llama"


def test_shard_users_partition():
    users = [f"u{i}" for i in (5, 3, 9, 1, 7)] + ["u3"]
    parts = [shard.shard_users(users, r, 3) for r in range(3)]
    assert parts == [["u1", "u3"], ["u5", "u7"], ["u9"]]
    assert shard.shard_users(["a"], 1, 2) == []


def test_merge_shards_sorted_and_missing(tmp_path):
    out = tmp_path / "m.jsonl"
    write_jsonl(shard.shard_path(out, 0, 2), [{"user": "b", "x": 1}])
    with pytest.raises(FileNotFoundError, match="shard 1 of 2"):
        shard.merge_shards(out, 2)
    write_jsonl(shard.shard_path(out, 1, 2), [{"user": "a", "x": 2}, {"user": "a", "x": 0}])
    assert [r["x"] for r in shard.merge_shards(out, 2)] == [2, 0, 1]  # by user, stable within a user


def test_policy_narrowing_needs_out(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import shard_generate

    with pytest.raises(SystemExit, match="--out"):
        shard_generate.main(["--profile", "smoke", "--policy", "gemma3-270m"])


def test_units_are_whole_task_blocks_that_reblock_the_same():
    sys.path.insert(0, str(REPO / "scripts"))
    import shard_generate

    from lib.evaluation import generation

    qs = [{"task": t, "user": u} for t, us in QUERY_USERS.items() for u in us]
    units = shard_generate.task_blocks(qs, {"tasks": list(TASKS), "user_block": 2})
    assert units["LaMP-5|000000"] == ("LaMP-5", ["new0", "new1"]) and len(units) == 5
    for world in (1, 2, 3, 4):
        for rank in range(world):
            for task in TASKS:  # a process's share of a task re-blocks into the task's own blocks
                mine = [units[u][1] for u in shard.shard_users(units, rank, world) if units[u][0] == task]
                assert generation.user_blocks([u for b in mine for u in b], 2) == mine


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pairs(task, users, n):
    """Pairs in the tiny vocabulary: users prefer longer or shorter headlines (planted by parity)."""
    out = []
    for k, (user, group) in enumerate(users):
        for j in range(n):
            a = " ".join(WORDS[(j + i) % len(WORDS)] for i in range(6))
            b = " ".join(WORDS[(3 * j + i) % len(WORDS)] for i in range(2))
            out.append(dict(pair_id=f"{task}/{user}-{j}", task=task, user=user, user_group=group,
                            split="train" if j < n - 2 else "test", prompt=f"generate a headline for this {WORDS[j]}",
                            chosen=a if k % 2 else b, rejected=b if k % 2 else a))
    return out


def _setup(root, model, tok):
    """A tiny profile under ``root``: Pref-LaMP queries and pairs of two tasks, and a RM index whose reward
    models (bt, individual on the policy's hidden states) have the same folder names in both tasks."""
    from lib.rewards import PairFeatures, train_zoo
    from lib.rewards.features import LMFeaturizer

    pre, rms = root / "data/processed/tiny/preflamp", root / "data/processed/tiny/rms"
    pre.mkdir(parents=True)
    (pre / "manifest.json").write_text("{}")
    seen = [(f"user{i}", "seen") for i in range(4)]
    index = []
    for task, users in QUERY_USERS.items():
        pairs = _pairs(task, seen + [("new0", "unseen"), ("new1", "unseen")], 5)
        write_jsonl(pre / task / "pairs.jsonl", pairs)
        qs = [query(f"{task}/q{i}", user=u, task=task, rule="question" if i % 2 else None, n_profile=3)
              for i, u in enumerate(users)]
        for q in qs:
            q["user_group"] = "unseen" if q["user"].startswith("new") else "seen"
        write_jsonl(pre / task / "queries.jsonl", qs)
        known = [p for p in pairs if p["user"] != "new1"]  # new1: adapted when notebook 05 loads the models
        pf = PairFeatures.compute(LMFeaturizer(model, tok, name=POLICY), known, progress=False)
        rows, _ = train_zoo(known, pf, task, rms, methods=("bt", "individual"), hparams={"epochs": 3},
                            n_resamples=10, progress=False)
        index += rows
    pd.DataFrame(index).to_csv(rms / "index.csv", index=False)
    cfg = {"common": {"profile": "tiny", "seed": 0},
           "notebooks": {"05_generation": {
               "policies": [POLICY], "tasks": list(TASKS), "queries_per_user": None, "icl_ks": [1],
               "rgd_ws": [0.5, 4.0], "rgd_k": 4, "max_new_tokens": 4, "batch_size": 4, "rgd_batch_size": 16,
               "user_block": 2, "rm_methods": None, "threads": 1}}}
    (root / "configs").mkdir()
    (root / "configs/tiny.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    return pd.DataFrame(index)


@pytest.mark.slow
def test_two_processes_equal_one_with_reward_models(tmp_path, monkeypatch):
    import torch

    from lib import rewards
    from lib.core import schema
    from lib.core.config import paths
    from lib.evaluation import generation

    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    model = tiny_lm(tok)
    mdir = tmp_path / POLICY
    model.save_pretrained(mdir)
    tok.save_pretrained(mdir)
    root = tmp_path / "root"
    index = _setup(root, model, tok)
    assert (index.dir.str.split("/").str[-1].value_counts() == 2).all()  # folder names repeat across tasks
    args = ["scripts/shard_generate.py", "--profile", "tiny", "--configs", str(root / "configs"),
            "--model-dir", str(mdir), "--threads", "1"]
    env = {**os.environ, "PRC_ROOT": str(root), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = root / "data/processed/tiny/eval/generations.csv"

    def launch(prefix, tag):
        shutil.rmtree(root / "data/cache", ignore_errors=True)  # every run generates (no shared cache)
        r = subprocess.run(prefix + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        shutil.copytree(out.parent, tmp_path / tag)
        return tmp_path / tag / out.name

    one = launch([sys.executable], "one")
    two = launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(_free_port())], "two")
    assert one.read_bytes() == two.read_bytes()
    # 5 units (task, block): process 0 takes LaMP-4's two blocks and LaMP-5's first, process 1 LaMP-5's others
    shards = [read_jsonl(tmp_path / "two" / "generations.shards" / f"rows.shard{r}-of-2.jsonl") for r in range(2)]
    assert {(r["task"], r["user"]) for r in shards[0]} == {("LaMP-4", f"user{i}") for i in range(4)} | {
        ("LaMP-5", "new0"), ("LaMP-5", "new1")}
    assert {(r["task"], r["user"]) for r in shards[1]} == {("LaMP-5", f"user{i}") for i in range(3)}

    df = schema.read_results(one)
    assert set(df.task) == set(TASKS) and set(df.half) == {"val", "test"}
    rgd = df[df.system == "rgd"]
    for task in TASKS:
        assert set(rgd[rgd.task == task].rm) == {"bt/tiny-llama/s0", "individual/tiny-llama/s0"}
    assert "new1" in set(rgd.user)  # an unseen user the saved models did not know: adapted on loading
    assert len(df) == 13 * (1 + 1 + 2 * 2)  # queries x (base, ICL k=1, 2 RMs x 2 w)

    # the lib function notebook 05 calls gives the same file
    monkeypatch.setenv("PRC_ROOT", str(root))
    shutil.rmtree(root / "data/cache", ignore_errors=True)
    sys.path.insert(0, str(REPO / "scripts"))
    import shard_generate

    params = shard_generate.notebook_params("tiny", root / "configs")
    P = paths("tiny")
    model.registry_name = POLICY
    queries = generation.generation_queries(P, params)
    frames = [generation.generate_policy_rows(P, POLICY, model, tok, rewards.read_rm_index(P.rms / "index.csv"), params,
                                            progress=False)]
    lib_csv = schema.write_results(generation.finish_generations(frames, queries, params["seed"], params["val_frac"]),
                                     tmp_path / "lib.csv")
    assert lib_csv.read_bytes() == one.read_bytes()
