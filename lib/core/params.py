"""Every notebook parameter's allowed values, declared once (:data:`RULES`) and checked before any work.

:func:`lib.core.pipeline.parameters_for` (what Make runs) and :func:`lib.core.pipeline.apply_profile` (a notebook
run by hand) call :func:`check_parameters` on the values a notebook will run with: its declared defaults under the
profile's values. Every violation is listed in one ``ValueError`` naming the profile file, the notebook, the key,
the value and what is allowed. A parameter name means the same in every notebook that declares it (``seed``,
``max_new_tokens``, ``val_frac``, ...); tests/test_params.py checks that every declared parameter has a rule.

The rules check type, range, emptiness and finiteness. Names that a stage owns (LaMP tasks, reward-model
methods, registry models) are checked by that stage's own validators (``lamp.task_spec``,
``rewards.check_methods``, ``models.spec``) at the top of the notebook, since core imports no stage; the fixed
vocabularies below are the same tuples the stages use (tests/test_params.py compares them).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """Allowed values of one parameter: ``kind`` int / float / bool / str / list / dict / any (``options``)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo < v (else lo <= v)
    hi_open: bool = False  # v < hi (else v <= hi)
    choices: tuple = ()
    optional: bool = False  # None is allowed
    each: Rule | None = None  # list items
    nonempty: bool = False  # lists, dicts, strings
    keys: dict = field(default_factory=dict)  # dict: rules of known keys (others are left to the stage)
    closed: bool = False  # dict: keys other than ``keys`` are errors
    options: tuple = ()  # kind "any": one of these rules
    why: str = ""

    def describe(self) -> str:
        if self.kind == "any":
            s = " or ".join(o.describe() for o in self.options)
        elif self.choices:
            s = f"one of {list(self.choices)}"
        elif self.kind in ("int", "float"):
            s = "a whole number" if self.kind == "int" else "a finite number"
            if self.lo is not None and self.hi is not None:
                s += f" in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
            elif self.lo is not None:
                s += f" {'>' if self.lo_open else '>='} {self.lo}"
        elif self.kind == "list":
            s = ("a non-empty list" if self.nonempty else "a list") + (f", each {self.each.describe()}" if self.each else "")
        elif self.kind == "dict":
            s = "a mapping" + (f" with keys among {sorted(self.keys)}" if self.closed else
                               f" (keys {sorted(self.keys)} checked)" if self.keys else "")
        elif self.kind == "str":
            s = "a non-empty string" if self.nonempty else "a string"
        else:
            s = f"a {self.kind}"
        return s + (" or None" if self.optional else "") + (f" ({self.why})" if self.why else "")

    def error(self, v) -> str | None:
        """Why ``v`` is not allowed, as a phrase (\"is out of range\"; None: it is allowed)."""
        if v is None:
            return None if self.optional else "is not allowed"
        if self.kind == "any":
            return None if any(o.error(v) is None for o in self.options) else "is not allowed"
        if self.choices:
            return None if (isinstance(v, str) or not isinstance(v, (list, dict))) and v in self.choices \
                else "is not allowed"
        if self.kind == "bool":
            return None if isinstance(v, bool) else f"is a {type(v).__name__}, not a bool"
        if self.kind in ("int", "float"):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy scalars are numbers too
                return f"is a {type(v).__name__}, not a number"
            if not math.isfinite(v):
                return "is not finite"
            if self.kind == "int" and not (isinstance(v, numbers.Integral) or float(v).is_integer()):
                return "is not a whole number"
            if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
                return "is out of range"
            if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
                return "is out of range"
            return None
        if self.kind == "str":
            if not isinstance(v, str):
                return f"is a {type(v).__name__}, not a string"
            return "is empty" if self.nonempty and not v.strip() else None
        if self.kind == "list":
            if not isinstance(v, (list, tuple)):
                return f"is a {type(v).__name__}, not a list"
            if self.nonempty and not v:
                return "is empty"
            bad = [x for x in v if self.each is not None and self.each.error(x) is not None]
            return f"contains {bad[:3]!r}" if bad else None
        if self.kind == "dict":
            if not isinstance(v, dict):
                return f"is a {type(v).__name__}, not a mapping"
            bad = [f"{k}={v[k]!r} ({r.describe()})" for k, r in self.keys.items() if k in v and r.error(v[k])]
            if self.closed and set(v) - set(self.keys):
                bad.append(f"unknown key(s) {sorted(set(v) - set(self.keys))}")
            return ("has " + "; ".join(bad)) if bad else None
        raise ValueError(f"Rule: unknown kind {self.kind!r}")

    def bad_example(self):
        """A value this rule refuses (for the tests)."""
        if self.kind == "any":
            return {"not": "allowed"}
        if self.choices:
            return "no-such-choice"
        if self.kind in ("int", "float"):
            return (self.lo - 1) if self.lo is not None else math.nan
        if self.kind == "list":
            return [] if self.nonempty else "not a list"
        if self.kind == "dict":
            return next(({k: r.bad_example()} for k, r in self.keys.items()), "not a mapping")
        if self.kind == "str":
            return "" if self.nonempty else 3
        return "not a bool"


def count(lo: int = 1, optional: bool = False, why: str = "") -> Rule:
    return Rule("int", lo=lo, optional=optional, why=why)


def number(lo: float | None = None, lo_open: bool = False, hi: float | None = None, hi_open: bool = False) -> Rule:
    return Rule("float", lo=lo, lo_open=lo_open, hi=hi, hi_open=hi_open)


def fraction(lo_open: bool = True, hi_open: bool = True, why: str = "") -> Rule:
    return Rule("float", lo=0, hi=1, lo_open=lo_open, hi_open=hi_open, why=why)


def names(nonempty: bool = True, optional: bool = False, choices: tuple = ()) -> Rule:
    item = Rule("str", nonempty=True, choices=choices)
    return Rule("list", each=item, nonempty=nonempty, optional=optional)


def one_of(*choices, optional: bool = False) -> Rule:
    return Rule("str", choices=choices, optional=optional)


TEXT, FLAG = Rule("str", nonempty=True), Rule("bool")
WEIGHTS = Rule("list", each=number(lo=0), nonempty=True, why="reward weights")
DEFINITIONS = ("cumulative", "rgd_likelihood", "rgd_likelihood_smoothed")  # lib.evaluation.policy_accuracy.sequence_scores
RETRIEVERS = ("bm25", "recency", "random")  # lib.evaluation.icl.RETRIEVERS
REJECTED = ("policy", "other_user", "other_rule")  # lib.data.preflamp.REJECTED
SPLITS = ("train", "dev")  # lib.data.lamp.SPLITS
PREF_SETS = ("tldr", "prism", "personalllm")  # lib.data.prefdata.LOADERS
RM_BACKBONES = Rule("any", optional=True, options=(one_of("policy"), names()))

RULES: dict[str, Rule] = {
    # common
    "profile": TEXT, "seed": count(0),
    # 01
    "corpus": one_of("synthetic", "lamp"), "lamp_root": Rule("str", nonempty=True, optional=True), "download": FLAG,
    "tasks": names(nonempty=False), "split": one_of(*SPLITS), "synthetic_users": count(2, why="a seen and an unseen user"),
    "synthetic_profile_size": count(2), "synthetic_queries_per_user": count(1),
    "max_users": count(2, optional=True, why="a seen and an unseen user"),
    "max_pairs_per_user": count(2, why="a train and a test pair per user"),
    "min_profile": count(1), "unseen_frac": fraction(lo_open=False), "test_frac": fraction(),
    "max_source_chars": count(1), "max_query_chars": count(1), "rejected": one_of(*REJECTED), "policy": TEXT,
    "rejected_degenerate": one_of("keep", "drop"),
    "max_new_tokens": count(1), "gen_batch_size": count(1),
    # 02
    "synthetic_prefsets": names(nonempty=False, choices=PREF_SETS),
    "pref_datasets": Rule("dict", keys={k: Rule("dict") for k in PREF_SETS}, closed=True),
    "methods": names(), "backbones": names(), "seeds": Rule("list", each=count(0), nonempty=True),
    "prefix_train_options": Rule("list", each=FLAG, nonempty=True), "n_prefix": count(0),
    "hparams": Rule("dict", keys={"epochs": count(1), "batch_size": count(1), "lr": number(0, lo_open=True),
                                  "weight_decay": number(0), "val_frac": fraction(), "min_val": count(1),
                                  "fixed_epochs": count(1), "patience": count(1), "retries": count(0)}),
    "arch": Rule("dict"),  # names and values: rewards.check_methods, the notebook's first check
    "adapt": Rule("dict", keys={"steps": count(1), "lr": number(0, lo_open=True), "l2": number(0)}),
    "lora_backbones": names(nonempty=False),
    "lora_hparams": Rule("dict", keys={"epochs": count(1), "batch_size": count(1), "lr": number(0, lo_open=True),
                                       "weight_decay": number(0), "lora_r": count(1)}),
    "feature_batch_size": count(1), "n_resamples": count(100, why="a percentile CI from fewer resamples is noise"),
    "train_jobs": count(1),
    # 03
    "task": TEXT, "user": Rule("str", nonempty=True, optional=True), "policies": names(), "backbone": TEXT,
    "ws": WEIGHTS, "calibrated": FLAG, "k": count(1), "n_queries": count(1),
    # 04
    "datasets": names(optional=True), "rgd_k": count(1), "definitions": names(choices=DEFINITIONS),
    "val_frac": fraction(), "rm_methods": names(optional=True), "rm_backbones": RM_BACKBONES,
    "rm_seeds": Rule("list", each=count(0), nonempty=True, optional=True), "rm_prefix_train": Rule("bool", optional=True),
    "max_pairs_per_group": count(1, optional=True), "n_boot": count(100, why="a percentile CI from fewer resamples is noise"),
    "batch_size": count(1), "threads": count(1), "step_calibration": FLAG,
    "deploy_definition": one_of(*DEFINITIONS),
    "kl_targets": Rule("list", each=number(lo=0, lo_open=True), nonempty=False, why="target KLs (nats per token)"),
    # 05
    "queries_per_user": count(1, optional=True), "icl_ks": Rule("list", each=count(1), nonempty=True),
    "icl_retriever": one_of(*RETRIEVERS), "icl_max_tokens": count(1),
    "rgd_ws": Rule("any", options=(one_of("deployed"), WEIGHTS)), "rgd_rms": one_of("method_picks", "all"),
    "unknown_users": one_of("error", "skip"), "rgd_batch_size": count(1), "user_block": count(1),
    # 06
    "rm_acc_col": one_of("rm_acc_seen", "rm_acc_unseen"),
}


def check_values(where: str, rules: dict, values: dict) -> None:
    """``ValueError`` after ``where`` listing every ``values[name]`` that ``rules[name]`` refuses: the check library
    functions run on their own arguments, worded like the notebook parameters'."""
    bad = [f"{k}={v!r:.80} {why}; allowed: {rules[k].describe()}" for k, v in values.items()
           if (why := rules[k].error(v)) is not None]
    if bad:
        raise ValueError(f"{where}: " + "; ".join(bad))


def check_parameters(values: dict, where: str) -> None:
    """``ValueError`` listing every value of ``values`` (parameter -> value) that its rule refuses, each with the
    key, the value and what is allowed, after ``where`` (the profile file and notebook). A parameter without a
    rule is an error too: declare it in :data:`RULES`."""
    bad = []
    for key, v in values.items():
        rule = RULES.get(key)
        if rule is None:
            bad.append(f"{key}: no rule declares its allowed values (lib/core/params.py RULES)")
        elif (why := rule.error(v)) is not None:
            bad.append(f"{key}: {v!r:.80} {why}; allowed: {rule.describe()}")
    if bad:
        raise ValueError(f"{where}: " + "; ".join(bad))


def check_agreement(values: dict[str, dict], where: str) -> None:
    """Settings that several notebooks name must agree, checked before the first notebook runs (a profile whose
    05 asked for a task 01 never built used to fail after 38 minutes). ``values``: notebook -> the values it runs
    with. Notebook 01 builds the Pref-LaMP tasks, 02 trains reward models on some of them (and on the preference
    sets), 03-05 use those reward models."""
    get = lambda nb, key: (values.get(nb) or {}).get(key)  # noqa: E731
    built, trained = set(get("01_build_pref_lamp", "tasks") or []), set(get("02_train_reward_models", "tasks") or [])
    prefsets = set(get("02_train_reward_models", "synthetic_prefsets") or []) | \
        set(get("02_train_reward_models", "pref_datasets") or {})
    backbones = set(get("02_train_reward_models", "backbones") or []) | \
        set(get("02_train_reward_models", "lora_backbones") or [])
    bad = []

    def need(nb: str, key: str, names, allowed: set, what: str):
        extra = sorted(set(names) - allowed)
        if extra:
            bad.append(f"notebooks.{nb}.{key} names {extra}, which {what} ({sorted(allowed)})")

    need("02_train_reward_models", "tasks", trained, built, "notebooks.01_build_pref_lamp.tasks does not build")
    task03 = get("03_reward_guided_decoding", "task")
    need("03_reward_guided_decoding", "task", [task03] if task03 else [], trained,
         "has no reward models: notebooks.02_train_reward_models.tasks")
    need("05_generation", "tasks", get("05_generation", "tasks") or [], built & trained,
         "is not both built by 01 and given reward models by 02")
    need("04_policy_accuracy", "datasets", get("04_policy_accuracy", "datasets") or [], trained | prefsets,
         "notebook 02 trains no reward models on")
    for nb in ("04_policy_accuracy", "05_generation"):
        rb = get(nb, "rm_backbones")
        if isinstance(rb, list):
            need(nb, "rm_backbones", rb, backbones, "notebook 02 trains no reward models on")
    if get("05_generation", "rgd_ws") == "deployed" and values.get("04_policy_accuracy"):
        # 05 decodes each reward model at the setting 04 chose: the same policies, candidates, units and backbones
        need("05_generation", "policies", get("05_generation", "policies") or [],
             set(get("04_policy_accuracy", "policies") or []), "notebook 04 deploys no reward models for")
        ds04 = get("04_policy_accuracy", "datasets")
        if ds04 is not None:
            need("05_generation", "tasks", get("05_generation", "tasks") or [], set(ds04),
                 "notebook 04 deploys no reward models on")
        for key in ("rgd_k", "calibrated", "rm_backbones"):
            if get("05_generation", key) != get("04_policy_accuracy", key):
                bad.append(f"notebooks.05_generation.{key} = {get('05_generation', key)!r} but notebook 04, which "
                           f"chose the deployed settings, ran with {get('04_policy_accuracy', key)!r}")
    bb = get("03_reward_guided_decoding", "backbone")
    if bb and bb != "policy":
        need("03_reward_guided_decoding", "backbone", [bb], backbones, "notebook 02 trains no reward models on")
    if bad:
        raise ValueError(f"{where}: the notebooks disagree: " + "; ".join(bad))
