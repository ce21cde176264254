"""The work of a profile, counted from its parameters, and its wall time estimated from measured rates.

:func:`count_work` counts the dominant units of notebooks 01-05 (generated tokens, response forwards,
teacher-forced responses) from each notebook's parameters (:func:`profile_params`: its declared defaults under
the profile's values, as Make runs it); :func:`estimate` divides them by measured rates
(scripts/bench_rgd.py ``--estimate-profile``). What the counts assume, part by part:

* **Caps, not counts.** Real LaMP's users, pairs and queries are not fixed by a config; every count takes the
  config's cap (``max_users``, ``max_pairs_per_user``, ``max_pairs_per_group``, ``queries_per_user``), so it is
  an upper bound on the real count. A count that needs an uncapped number (``max_users: null`` on real LaMP,
  ``max_pairs_per_group: null``) is a ``ValueError`` naming the parameter.
* **01**: greedy tokens of the 01 policy: one rejected response per pair (``rejected: policy``) and one
  paraphrase per LaMP-7 pair (re-asked paraphrases of leaking tweets not counted), each ``max_new_tokens``
  (no early stop).
* **02**: response forwards on the reward backbones: every pair's two responses once per frozen backbone
  (the prefix features come from the same pass), and per LoRA reward model (backbone x method x seed)
  ``epochs`` x 3 forward-equivalents (forward + backward, the usual rule of thumb) plus one feature pass.
  Only Pref-LaMP pairs are counted: the preference datasets' sizes (``pref_datasets``) are not fixed by the
  config, so 02 is a lower bound on that side. Training the heads (CPU-sized) is not counted.
* **03**: per policy, ``n_queries`` greedy generations and ``n_queries`` x methods x ``ws`` RGD ones.
* **04**: teacher-forced responses: policies x datasets (Pref-LaMP tasks and preference sets) x 2 user groups
  x ``max_pairs_per_group`` x 2 responses, once per backbone group scored (``rm_backbones``: "policy" one,
  None every backbone of 02, LoRA ones included).
* **05**: tokens of policies x tasks x queries (``max_users`` x ``queries_per_user``) x (1 base + one per ICL
  k) greedy rows and x reward models deployed x ws RGD rows; ``rgd_rms: method_picks`` deploys one reward model
  per method (lib/evaluation/generation.py), ``all`` every one of the zoo (the filters ``rm_*`` not applied:
  an upper bound). Only 05 shards over GPUs (scripts/shard_generate.py, by user blocks).
"""
from __future__ import annotations

import pandas as pd

from .pipeline import NOTEBOOKS, _defaults, declared_parameters, parameters_for

COUNTED = ("01_build_pref_lamp", "02_train_reward_models", "03_reward_guided_decoding", "04_policy_accuracy",
           "05_generation")
SHARDED = {"05_generation"}  # scripts/shard_generate.py; every other notebook runs in one process


def profile_params(profile: str, configs_dir=None) -> dict[str, dict]:
    """Each counted notebook's parameters for ``profile``: declared defaults under the profile's values."""
    return {nb: _defaults(declared_parameters(NOTEBOOKS / f"{nb}.ipynb")) | parameters_for(nb, profile, configs_dir)
            for nb in COUNTED}


def _need(p: dict, nb: str, key: str):
    if p.get(key) is None:
        raise ValueError(f"{nb}.{key} is None: counting the work needs a cap there (the config's value is the bound)")
    return p[key]


def _users(p01: dict) -> int:
    return p01["synthetic_users"] if p01["corpus"] == "synthetic" else _need(p01, "01_build_pref_lamp", "max_users")


def count_work(params: dict[str, dict]) -> list[dict]:
    """The parts of a profile's work: dicts of ``notebook``, ``part``, ``units``, ``unit`` and ``rate`` (which
    measured rate times it: ``greedy`` or ``rgd`` tokens/s, ``teacher_forced`` responses/s). ``params``: as
    :func:`profile_params` returns. Upper bounds where the config caps a count (see the module docstring)."""
    p1, p2, p3, p4, p5 = (params[nb] for nb in COUNTED)
    users = _users(p1)
    pairs = {t: users * p1["max_pairs_per_user"] for t in p1["tasks"]}  # per task, at most
    tok1 = p1["max_new_tokens"]
    rejected = sum(pairs.values()) if p1["rejected"] == "policy" else 0
    lamp_pairs = sum(pairs.get(t, 0) for t in p2["tasks"])
    n_lora = len(p2["lora_backbones"]) * len(p2["methods"]) * len(p2["seeds"])
    zoo = len(p2["methods"]) * len(p2["seeds"]) * (len(p2["backbones"]) * len(p2["prefix_train_options"])
                                                   + len(p2["lora_backbones"]))
    datasets = p4["datasets"] or [*p2["tasks"], *p2["synthetic_prefsets"], *p2["pref_datasets"]]
    groups4 = 1 if p4["rm_backbones"] == "policy" else \
        len(p4["rm_backbones"] or [*p2["backbones"], *p2["lora_backbones"]])
    rms5 = len(p5["rm_methods"] or p2["methods"]) if p5["rgd_rms"] == "method_picks" else zoo
    ws5 = 1 if p5["rgd_ws"] == "deployed" else len(p5["rgd_ws"])
    queries5 = len(p5["policies"]) * len(p5["tasks"]) * users * p5["queries_per_user"]
    tok3 = len(p3["policies"]) * p3["n_queries"] * p3["max_new_tokens"]
    return [
        dict(notebook=COUNTED[0], part="rejected responses", units=rejected * tok1, unit="tokens", rate="greedy"),
        dict(notebook=COUNTED[0], part="LaMP-7 paraphrases", units=pairs.get("LaMP-7", 0) * tok1, unit="tokens",
             rate="greedy"),
        dict(notebook=COUNTED[1], part="frozen-backbone features", units=lamp_pairs * 2 * len(p2["backbones"]),
             unit="response forwards", rate="teacher_forced"),
        dict(notebook=COUNTED[1], part="LoRA reward models", rate="teacher_forced", unit="response forwards",
             units=n_lora * lamp_pairs * 2 * (3 * p2["lora_hparams"]["epochs"] + 1)),
        dict(notebook=COUNTED[2], part="greedy", units=tok3, unit="tokens", rate="greedy"),
        dict(notebook=COUNTED[2], part="RGD", units=tok3 * len(p2["methods"]) * len(p3["ws"]), unit="tokens",
             rate="rgd"),
        dict(notebook=COUNTED[3], part="teacher-forced responses", unit="responses", rate="teacher_forced",
             units=len(p4["policies"]) * len(datasets) * 2 * _need(p4, COUNTED[3], "max_pairs_per_group") * 2 * groups4),
        dict(notebook=COUNTED[4], part="base + ICL", units=queries5 * (1 + len(p5["icl_ks"])) * p5["max_new_tokens"],
             unit="tokens", rate="greedy"),
        dict(notebook=COUNTED[4], part="RGD", units=queries5 * rms5 * ws5 * p5["max_new_tokens"], unit="tokens",
             rate="rgd"),
    ]


def estimate(parts: list[dict], rates: dict[str, float], gpus: int = 8) -> pd.DataFrame:
    """One row per notebook and a total: counted units, hours on one GPU and on ``gpus`` (only :data:`SHARDED`
    notebooks divide, by ``gpus``: perfect scaling, a lower bound there), ``units / rate`` summed over the parts.
    ``rates``: units per second for each ``rate`` key of ``parts`` (a missing or non-positive one is an error)."""
    bad = {p["rate"] for p in parts if not rates.get(p["rate"], 0) > 0}
    if bad:
        raise ValueError(f"estimate: no positive measured rate for {sorted(bad)} (rates given: {rates})")
    rows = []
    for nb in dict.fromkeys(p["notebook"] for p in parts):
        mine = [p for p in parts if p["notebook"] == nb]
        h1 = sum(p["units"] / rates[p["rate"]] for p in mine) / 3600
        n = gpus if nb in SHARDED else 1
        rows.append({"notebook": nb, "work": "; ".join(f"{p['part']}: {p['units']:,} {p['unit']} at {p['rate']}"
                                                      for p in mine),
                     "hours_1gpu": h1, f"gpus_used_of_{gpus}": n, f"hours_{gpus}gpu": h1 / n})
    df = pd.DataFrame(rows)
    total = {"notebook": "total", "work": "sum of the notebooks (06 not counted: CPU figures)",
             "hours_1gpu": df.hours_1gpu.sum(), f"gpus_used_of_{gpus}": gpus, f"hours_{gpus}gpu": df[f"hours_{gpus}gpu"].sum()}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)
