"""Benchmark reward-guided decoding (lib/decoding/rgd.py): tokens/s of every path against plain greedy.

    python scripts/bench_rgd.py                                   # CPU, packaged SmolLM2-135M
    python scripts/bench_rgd.py --device cuda --random-arch qwen2.5-7b --batch 1 8 32 --out DIR
    python scripts/bench_rgd.py --random-arch qwen2.5-7b --tiny ...   # the same command on a CPU in seconds (a check)

Prints one table: tokens/s (batch x new tokens / wall time, prefill included) of HF ``generate``
greedy, our plain greedy loop, naive RGD (every candidate sequence re-encoded each step), path a
(shared backbone), b (separate same-size reward LM) and c (MiniLM text reward; SmolLM2 only),
each with its ratio to HF greedy and to our plain greedy loop (x_plain, same loop overhead)
measured in the same run, its ratio to its own batch-1 throughput (x_batch1), and peak memory (GPU: max allocated;
CPU: peak process RSS, models included, sampled every 5 ms). Then the bookkeeping check (an RGD step against the
forwards it needs, each timed alone) and the long-prompt check (time per step vs prompt length).
Two tables measure the batching of the pipeline's own workloads, each against its one-at-a-time
baseline in the same run: ``teacher_forced`` (notebook 04: responses/s of
``policy_accuracy.teacher_forced_many`` with many reward heads on the policy's states, batches of
responses vs one response at a time) and ``multi_rm`` (notebook 05: generated tokens/s when every
(reward model, w) setting is a row of shared batches vs one setting per ``generate`` call). With
``--estimate-profile PROFILE`` a last table, ``estimate``, is an ESTIMATE (not a measurement) of the wall time of
``make all PROFILE=...`` on one GPU and on ``--gpus``: the work counted from the profile (lib/core/workload.py)
over the rates measured here (:func:`measured_rates`).
Random-arch models are Qwen2.5 architectures with random weights (speed does not depend on
weights), built from the config numbers below, no download; prompts are random token ids. ``--tiny`` shrinks the
architecture (:data:`TINY`: widths, depth and vocabulary; the family's shape, grouped-query attention and tied or
untied embeddings kept) so that a command written for a GPU runs on a CPU in seconds: a check that it runs, no
measurement (tests/test_bench_rgd.py runs the README's command this way).
The reward head is a linear head with one vector per user (as in the tests).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing lib
from lib.core import kvcache, models, workload
from lib.decoding import rgd
from lib.decoding.rgd import DecodingSettings
from lib.evaluation import policy_accuracy
from lib.rewards import RewardModel

QWEN25 = {  # Qwen2.5-*-Instruct config.json numbers
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=4096)  # --tiny: these replace the --random-arch numbers


def arch_config(name: str, tiny: bool = False) -> dict:
    """The config numbers of a random-arch model (``--tiny``: :data:`TINY` over them)."""
    return {**QWEN25[name], **(TINY if tiny else {})}


class LinearUserRM(RewardModel):
    method = "bench-linear"

    def __init__(self, backbone, kind, dim, users, seed=0):
        super().__init__(backbone, kind, dim, users)
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.randn(dim, generator=g) / dim ** 0.5)
        self.u = nn.Parameter(torch.randn(len(users), dim, generator=g) / dim ** 0.5)

    def head(self, feats, user_idx):
        return (feats * (self.a + self.u[user_idx])).sum(-1)


class IdTokenizer:
    """Stand-in tokenizer for random-arch models: prompts are token ids, nothing is decoded. Its end token (id 1) is
    what teacher forcing appends to every response, as notebook 04 does; every decoding here runs with
    ``eos_token_ids=[]`` (a fixed number of new tokens), so it never ends a generation."""

    pad_token_id, eos_token_id = 0, 1

    def decode(self, ids, skip_special_tokens=True):
        return ""


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory during a block: CUDA max allocated, or the process's CPU RSS (models included),
    sampled every 5 ms."""

    def __init__(self, device):
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.top, self.stop = self._rss(), False

            def watch():
                while not self.stop:
                    self.top = max(self.top, self._rss())
                    time.sleep(0.005)

            self.thread = threading.Thread(target=watch, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.stop = True
            self.thread.join()
            self.peak_mb = self.top / 2**20


def build(args, device, dtype):
    """(policy, tok, rm_featurizer for path b, encoder featurizer for path c or None, make_prompts)."""
    if args.random_arch:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        def make(seed):
            torch.manual_seed(seed)
            cfg = Qwen2Config(**arch_config(args.random_arch, args.tiny), max_position_embeddings=32768, rope_theta=1e6,
                              rms_norm_eps=1e-6, use_sliding_window=False, attn_implementation=args.attn)
            old = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                with torch.device(device):
                    m = Qwen2ForCausalLM(cfg)
            finally:
                torch.set_default_dtype(old)
            m.generation_config.eos_token_id = None
            return m.eval().requires_grad_(False)

        policy, tok = make(0), IdTokenizer()
        rm_feat = SimpleNamespace(model=make(1), tok=tok, kind="lm_last")
        g = torch.Generator().manual_seed(0)

        vocab = arch_config(args.random_arch, args.tiny)["vocab_size"]

        def prompts(B, L):
            return [torch.randint(100, min(20000, vocab), (L,), generator=g).tolist() for _ in range(B)]

        return policy, tok, rm_feat, None, prompts, args.random_arch + ("-tiny" if args.tiny else "")

    from lib.core import models
    from lib.rewards.features import EncoderFeaturizer, LMFeaturizer

    policy, tok = models.load_causal_lm(args.model, device=device, dtype=dtype)
    rm_model, _ = models.load_causal_lm(args.model, device=device, dtype=dtype)  # a same-size separate RM
    rm_feat = LMFeaturizer(rm_model, tok, name=f"{args.model}-rm")
    enc = EncoderFeaturizer.from_name("minilm-l6", device=device) if "text" in args.methods else None
    words = ("markets rallied on tuesday as investors weighed new inflation data and the central bank signalled "
             "that rates could stay higher for longer while technology shares led the gains").split()

    def prompts(B, L):  # user messages whose chat-formatted prompt has about L tokens
        base = len(models.prompt_ids(tok, "Generate a headline for this article: "))
        n = max(1, int((L - base) / 1.2))
        return [f"Generate a headline for this article ({i}): " + " ".join(words[(i + j) % len(words)] for j in range(n))
                for i in range(B)]

    return policy, tok, rm_feat, enc, prompts, args.model


def hf_greedy(policy, tok, prompts, n):
    ids, mask = models.pad_batch(rgd.encode_prompts(tok, prompts)[0], tok.pad_token_id or 0, "left",
                                 next(policy.parameters()).device)
    gc = copy.deepcopy(policy.generation_config)
    gc.eos_token_id, gc.pad_token_id, gc.do_sample, gc.max_new_tokens, gc.min_new_tokens = 10**9, 0, False, n, None
    gc.temperature = gc.top_p = gc.top_k = None
    return policy.generate(input_ids=ids, attention_mask=mask, generation_config=gc)


def bench_settings(args, n, path=None):
    """The benchmark's decoding settings: ``args.k`` candidates, ``n`` new tokens, no early stop."""
    return DecodingSettings(k=args.k, max_new_tokens=n, eos_token_ids=[], chunk_size=args.chunk_size, path=path)


def runner(method, policy, tok, rm_feat, enc, users, args):
    """A function (prompts, n_new) -> None running one method."""
    dim = policy.config.hidden_size
    if method == "hf_greedy":
        return lambda p, n: hf_greedy(policy, tok, p, n)
    if method == "plain":
        return lambda p, n: rgd.generate(policy, tok, p, settings=DecodingSettings(max_new_tokens=n, eos_token_ids=[]))
    rm, feat = {"shared": (LinearUserRM("policy", "lm_last", dim, users), None),
                "separate": (LinearUserRM("rm", "lm_last", dim, users, seed=1), rm_feat),
                "text": (LinearUserRM("minilm-l6", "encoder_mean", 384, users, seed=2), enc)}[
        "shared" if method == "naive" else method]
    rm = rm.to(next(policy.parameters()).device)
    path = None if method != "naive" else "naive"
    return lambda p, n: rgd.generate(policy, tok, p, users=users[: len(p)], rm=rm, w=1.0, policy_name="policy",
                                     featurizer=feat, settings=bench_settings(args, n, path=path))


def timed(fn, device, *a):
    sync(device)
    t = time.perf_counter()
    fn(*a)
    sync(device)
    return time.perf_counter() - t


def throughput_table(args, device, policy, tok, rm_feat, enc, make_prompts, users):
    rows = []
    for B in args.batch:
        prompts = make_prompts(B, args.prompt_len)
        base = None
        for m in args.methods:
            if m == "naive" and B not in args.naive_batch:
                continue
            if m == "text" and enc is None:
                continue
            fn = runner(m, policy, tok, rm_feat, enc, users, args)
            n = args.naive_tokens if m == "naive" else args.new_tokens
            fn(prompts, warm_tokens(device, n))
            with PeakMemory(device) as mem:
                sec = min(timed(fn, device, prompts, n) for _ in range(args.repeats))
            tps = B * n / sec
            base = tps if m == "hf_greedy" else base
            rows.append({"batch": B, "method": m, "new_tokens": n, "seconds": round(sec, 3), "tokens_per_s": round(tps, 2),
                         "x_greedy": round(tps / base, 3) if base else None, "peak_mem_mb": round(mem.peak_mb, 1)})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    plain = df[df.method == "plain"].set_index("batch").tokens_per_s
    df["x_plain"] = (df.tokens_per_s / df.batch.map(plain)).round(3) if len(plain) else None
    b1 = df[df.batch == min(args.batch)].set_index("method").tokens_per_s
    df["x_batch1"] = (df.tokens_per_s / df.method.map(b1)).round(2)
    return df


def warm_tokens(device, n):
    """Warm-up length: on CUDA every shape of the timed run (SDPA backends such as cuDNN build a plan
    per new sequence length, tens of ms each, which would otherwise land in whichever method runs
    first); on CPU two tokens."""
    return n if device.type == "cuda" else 2


def per_step(fn, device, prompts, n):
    """Median seconds per decoding step (the engine times each step; prefill excluded)."""
    fn(prompts, warm_tokens(device, n))
    return statistics.median(fn(prompts, n).extra["step_s"])


@torch.no_grad()
def forward_alone(model, prompts, k, reps, device, tok):
    """Time one k-candidate tree forward (+ lm_head on one row each) and one 1-token step, each alone."""
    ids, mask = models.pad_batch(rgd.encode_prompts(tok, prompts)[0], tok.pad_token_id or 0, "left", device)
    h, cache = kvcache.prefill(model, ids, mask)
    B, S = ids.shape
    pos = mask.sum(1)
    cand = torch.randint(100, 1000, (B, k), device=device)
    tree, one = [], []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        hc = kvcache.tree_forward(model, cache, cand, mask, pos)
        kvcache.lm_logp(model, hc[:, 0])
        sync(device)
        tree.append(time.perf_counter() - t)
        kvcache.keep_entry(cache, S, None)
        sync(device)
        t = time.perf_counter()
        kvcache.lm_logp(model, kvcache.step_one(model, cache, cand[:, 0], torch.nn.functional.pad(mask, (0, 1), value=1), pos))
        sync(device)
        one.append(time.perf_counter() - t)
        kvcache.keep_entry(cache, S, None)
    return sorted(tree)[reps // 2], sorted(one)[reps // 2]


def bookkeeping_table(args, device, policy, tok, rm_feat, enc, make_prompts, users):
    rows = []
    for B in args.batch:
        prompts = make_prompts(B, args.prompt_len + args.bk_tokens // 2)  # cache about mid-run length
        p0 = make_prompts(B, args.prompt_len)
        tree_p, one_p = forward_alone(policy, prompts, args.k, args.bk_reps, device, tok)
        tree_r, _ = forward_alone(rm_feat.model, prompts, args.k, args.bk_reps, device, tok)
        for m, need in [("plain", one_p), ("shared", tree_p), ("separate", one_p + tree_r)]:
            step = per_step(runner(m, policy, tok, rm_feat, enc, users, args), device, p0, args.bk_tokens)
            rows.append({"batch": B, "method": m, "step_ms": round(1e3 * step, 2), "forwards_alone_ms": round(1e3 * need, 2),
                         "ratio": round(step / need, 3)})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def long_prompt_table(args, device, policy, tok, rm_feat, enc, make_prompts, users):
    rows = []
    for L in args.long_prompts:
        prompts = make_prompts(1, L)
        g = per_step(runner("plain", policy, tok, rm_feat, enc, users, args), device, prompts, args.long_tokens)
        a = per_step(runner("shared", policy, tok, rm_feat, enc, users, args), device, prompts, args.long_tokens)
        rows.append({"prompt_len": L, "greedy_step_ms": round(1e3 * g, 2), "shared_step_ms": round(1e3 * a, 2),
                     "ratio": round(a / g, 3)})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df["prompt_growth"] = (df.prompt_len / df.prompt_len.iloc[0]).round(1)  # naive re-encoding would grow ~this much
    df["shared_step_growth"] = (df.shared_step_ms / df.shared_step_ms.iloc[0]).round(2)
    return df


def _heads(n, dim, users, device, seed=0):
    return [LinearUserRM("policy", "lm_last", dim, users, seed=seed + i).to(device) for i in range(n)]


def teacher_forced_table(args, device, policy, tok, rm_feat, enc, make_prompts, users):
    """Responses/s of teacher-forced RGD scoring (notebook 04), batched vs one response at a time."""
    N = args.tf_responses
    rms = {f"rm{i}": rm for i, rm in enumerate(_heads(args.tf_rms, policy.config.hidden_size, users, device))}
    prompts = make_prompts(N, args.prompt_len)
    g = torch.Generator().manual_seed(1)
    lens = [args.tf_resp_len // 2 + i % (args.tf_resp_len // 2 + 1) for i in range(N)]  # mixed lengths: padding
    responses = [torch.randint(100, min(20000, policy.config.vocab_size), (n,), generator=g).tolist() for n in lens]
    us = [users[i % len(users)] for i in range(N)]
    rows, base = [], None
    for B in args.tf_batch:
        fn = lambda: policy_accuracy.teacher_forced_many(policy, tok, rms, prompts, responses, us, k=args.k,  # noqa: E731
                                                    policy_name="policy", batch_size=B, progress=False)  # noqa: B023 (timed now)
        policy_accuracy.teacher_forced_many(policy, tok, rms, prompts[:B], responses[:B], us[:B], k=args.k,
                                       policy_name="policy", batch_size=B, progress=False)  # warm-up
        with PeakMemory(device) as mem:
            sec = timed(fn, device)
        rps = N / sec
        base = rps if base is None else base
        rows.append({"batch": B, "responses": N, "resp_tokens_mean": round(sum(lens) / N, 1), "reward_models": len(rms),
                     "seconds": round(sec, 2), "responses_per_s": round(rps, 2), "x_one_at_a_time": round(rps / base, 2),
                     "peak_mem_mb": round(mem.peak_mb, 1)})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def multi_rm_table(args, device, policy, tok, rm_feat, enc, make_prompts, users):
    """Generated tokens/s of RGD for every (reward model, w) setting (notebook 05): one setting per
    ``generate`` call vs every setting a row of shared batches (each row its own head and w)."""
    rms = _heads(args.mr_rms, policy.config.hidden_size, users, device, seed=100)
    ws = [float(w) for w in args.mr_ws]
    Q, n = args.mr_queries, args.mr_tokens
    prompts, us = make_prompts(Q, args.prompt_len), [users[i % len(users)] for i in range(Q)]
    settings = [(rm, w) for rm in rms for w in ws]
    total = len(settings) * Q * n

    def one_at_a_time():
        for rm, w in settings:
            rgd.generate(policy, tok, prompts, users=us, rm=rm, w=w, policy_name="policy", settings=bench_settings(args, n))

    rows_p = [p for _ in settings for p in prompts]
    rows_u = [u for _ in settings for u in us]
    rows_rm = [rm for rm, _ in settings for _ in prompts]
    rows_w = [w for _, w in settings for _ in prompts]

    def as_rows(B):
        def fn():
            for s in range(0, len(rows_p), B):
                rgd.generate(policy, tok, rows_p[s : s + B], users=rows_u[s : s + B], rm=rows_rm[s : s + B],
                             w=rows_w[s : s + B], policy_name="policy", settings=bench_settings(args, n))
        return fn

    out, base = [], None
    runs = [("one setting per call", Q, one_at_a_time)] + [("rows = rm x w x query", B, as_rows(B)) for B in args.mr_batch]
    for label, B, fn in runs:
        rgd.generate(policy, tok, rows_p[:B], users=rows_u[:B], rm=rows_rm[:B], w=rows_w[:B], policy_name="policy",
                     settings=DecodingSettings(k=args.k, max_new_tokens=warm_tokens(device, n), eos_token_ids=[]))  # warm-up
        with PeakMemory(device) as mem:
            sec = timed(fn, device)
        tps = total / sec
        base = tps if base is None else base
        out.append({"mode": label, "rows_per_batch": B, "settings": len(settings), "queries": Q, "new_tokens": n,
                    "seconds": round(sec, 2), "tokens_per_s": round(tps, 2), "x_one_setting": round(tps / base, 2),
                    "peak_mem_mb": round(mem.peak_mb, 1)})
        print(out[-1], flush=True)
    return pd.DataFrame(out)


ESTIMATE_NEEDS = ("throughput", "teacher_forced", "multi_rm")  # the tables whose rates --estimate-profile uses


def measured_rates(tables: dict) -> tuple[dict, dict]:
    """(rate key -> units/s, rate key -> where it was measured) for :func:`lib.core.workload.estimate`, each at
    the largest batch measured: ``greedy`` our plain loop (throughput table; notebooks 01 and 05's base and ICL
    rows run it), ``rgd`` rows = reward model x w x query (multi_rm table, as notebook 05 batches RGD) and
    ``teacher_forced`` responses/s (teacher_forced table, notebook 04's scoring)."""
    thr = tables["throughput"]
    g = thr[thr.method == "plain"].sort_values("batch").iloc[-1]
    mr = tables["multi_rm"]
    r = mr[mr["mode"] == "rows = rm x w x query"].sort_values("rows_per_batch").iloc[-1]
    tf = tables["teacher_forced"].sort_values("batch").iloc[-1]
    rates = {"greedy": float(g.tokens_per_s), "rgd": float(r.tokens_per_s), "teacher_forced": float(tf.responses_per_s)}
    where = {"greedy": f"throughput table, plain, batch {int(g.batch)}", "rgd": f"multi_rm table, {int(r.rows_per_batch)} rows "
             f"per batch", "teacher_forced": f"teacher_forced table, batch {int(tf.batch)}, {int(tf.reward_models)} reward heads"}
    return rates, where


def estimate_table(parts: list[dict], tables: dict, name: str, gpus: int = 8) -> pd.DataFrame:
    """The ESTIMATED wall time of ``make all PROFILE=<profile>``: the profile's counted work ``parts``
    (:func:`lib.core.workload.count_work`, upper bounds from the config's caps) over the rates just measured on
    this model (``name``); every policy and backbone is timed at that model's rates."""
    rates, where = measured_rates(tables)
    df = workload.estimate(parts, rates, gpus=gpus)
    used = {nb: {p["rate"] for p in parts if p["notebook"] == nb} for nb in df.notebook}
    df["rates_used"] = [("; ".join(f"{k} {rates[k]:.2f}/s ({where[k]})" for k in sorted(used[nb])) if used.get(nb)
                         else f"rates measured on {name}") for nb in df.notebook]
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                    help="default: as the pipeline loads models (bf16 on a GPU that supports it, else fp16; fp32 on cpu)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-arch", choices=sorted(QWEN25), default=None)
    ap.add_argument("--tiny", action="store_true", help="with --random-arch: a tiny model of that shape (a CPU check "
                    "that a GPU command runs; its numbers measure nothing)")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=60)
    ap.add_argument("--methods", nargs="+", default=["hf_greedy", "plain", "naive", "shared", "separate", "text"])
    ap.add_argument("--naive-batch", type=int, nargs="+", default=[1], help="batches at which naive RGD runs")
    ap.add_argument("--naive-tokens", type=int, default=None, help="default: --new-tokens")
    ap.add_argument("--chunk-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per cell (best kept)")
    ap.add_argument("--bk-tokens", type=int, default=24, help="steps for the bookkeeping check (0: skip)")
    ap.add_argument("--bk-reps", type=int, default=5)
    ap.add_argument("--long-prompts", type=int, nargs="*", default=[60, 1000, 2000])
    ap.add_argument("--long-tokens", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--tf-responses", type=int, default=32, help="teacher_forced table: responses scored")
    ap.add_argument("--tf-resp-len", type=int, default=20, help="teacher_forced table: longest response (tokens)")
    ap.add_argument("--tf-rms", type=int, default=24, help="teacher_forced table: reward heads sharing the forwards")
    ap.add_argument("--tf-batch", type=int, nargs="+", default=[1, 16], help="responses per batch (first: baseline)")
    ap.add_argument("--mr-rms", type=int, default=6, help="multi_rm table: reward models")
    ap.add_argument("--mr-ws", nargs="+", default=["0.1", "1.0"], help="multi_rm table: reward weights")
    ap.add_argument("--mr-queries", type=int, default=8, help="multi_rm table: queries (rows per setting)")
    ap.add_argument("--mr-batch", type=int, nargs="+", default=[48], help="multi_rm table: rows per mixed batch")
    ap.add_argument("--mr-tokens", type=int, default=16, help="multi_rm table: new tokens per row")
    ap.add_argument("--tables", nargs="+",
                    default=["throughput", "bookkeeping", "long_prompt", "teacher_forced", "multi_rm"])
    ap.add_argument("--out", default=None, help="folder for the CSV tables")
    ap.add_argument("--estimate-profile", default=None, metavar="PROFILE",
                    help="after the tables: the ESTIMATED wall time of `make all PROFILE=<PROFILE>` on one GPU and on "
                         "--gpus, from the work counted in the profile (lib/core/workload.py) and the rates measured "
                         "here (needs the throughput table with method plain, teacher_forced and multi_rm)")
    ap.add_argument("--gpus", type=int, default=8, help="--estimate-profile: GPUs notebook 05 shards over")
    args = ap.parse_args(argv)
    if args.estimate_profile and (set(ESTIMATE_NEEDS) - set(args.tables) or "plain" not in args.methods):
        ap.error(f"--estimate-profile needs the tables {list(ESTIMATE_NEEDS)} and method plain")
    if args.gpus < 1:
        ap.error("--gpus must be at least 1")
    # the work is counted before any benchmark runs: a bad or uncapped profile fails at once, not after the tables
    parts = workload.count_work(workload.profile_params(args.estimate_profile)) if args.estimate_profile else None
    if args.tiny and not args.random_arch:
        ap.error("--tiny shrinks a --random-arch model; name one (e.g. --random-arch qwen2.5-7b)")
    args.naive_tokens = args.naive_tokens or args.new_tokens
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = models.auto_device_dtype(args.device, args.dtype)  # the pipeline's rule (lib/core/models.py)
    policy, tok, rm_feat, enc, make_prompts, name = build(args, device, dtype)
    users = [f"user{i}" for i in range(max(args.batch + [args.mr_queries, 8]))]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"# {name} ({dtype}) on {where}; k={args.k}, {args.new_tokens} new tokens, prompt ~{args.prompt_len} tokens",
          flush=True)
    tables = {}
    if "throughput" in args.tables:
        tables["throughput"] = throughput_table(args, device, policy, tok, rm_feat, enc, make_prompts, users)
    if args.bk_tokens and "bookkeeping" in args.tables:
        tables["bookkeeping"] = bookkeeping_table(args, device, policy, tok, rm_feat, enc, make_prompts, users)
    if args.long_prompts and "long_prompt" in args.tables:
        tables["long_prompt"] = long_prompt_table(args, device, policy, tok, rm_feat, enc, make_prompts, users)
    if "teacher_forced" in args.tables:
        tables["teacher_forced"] = teacher_forced_table(args, device, policy, tok, rm_feat, enc, make_prompts, users)
    if "multi_rm" in args.tables:
        tables["multi_rm"] = multi_rm_table(args, device, policy, tok, rm_feat, enc, make_prompts, users)
    if args.estimate_profile:
        tables["estimate"] = estimate_table(parts, tables, name, args.gpus)
    for key, df in tables.items():
        print(f"\n## {key}: {name}, {where}\n{df.to_string(index=False)}", flush=True)
    if args.estimate_profile:
        print(f"(estimate, not a measurement: the work of `make all PROFILE={args.estimate_profile}` counted from its "
              f"config (caps: upper bounds; 02 counts Pref-LaMP pairs only) over the rates measured above on {name}; "
              "every policy and backbone timed at those rates; only 05 shards over GPUs, at perfect scaling)",
              flush=True)
    if args.out:  # one CSV per run, the tables stacked with a "table" column
        Path(args.out).mkdir(parents=True, exist_ok=True)
        out = Path(args.out) / f"bench_rgd_{name}_{device.type}.csv"
        pd.concat([df.assign(table=key, model=name, device=where) for key, df in tables.items()]).to_csv(out, index=False)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
