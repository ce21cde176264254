"""A synthetic corpus in exactly the LaMP JSON layout, with users whose writing rule is known.

It is the embedded default of the smoke profile (no download needed) and a test bed: since each
user's latent rule is kept, later notebooks can measure whether a generation follows it
(:func:`follows_rule`). It never stands in for real LaMP silently: the paper profile reads the
downloaded files, and the manifest of every Pref-LaMP build records which corpus it used.

Each task mirrors a LaMP generation task:

* ``LaMP-4`` news headline: profile items ``{id, text, title}``, input "Generate a headline for
  the following article: ..."
* ``LaMP-5`` scholarly title: profile items ``{id, abstract, title}``
* ``LaMP-7`` tweet paraphrase: profile items ``{id, text}`` (the user's own tweets), input
  "Paraphrase the following tweet without any explanation before or after it: ..."

A user = one latent rule applied to a neutral base output built from the same facts as the
source text. Rules (documented in :data:`RULES`): question, colon, lowercase, number, short,
vocab:<word>, exclaim, hashtag. LaMP gives each question its own profile; here every user has
``queries_per_user`` questions that share one profile (the loader groups them back by profile).

No leaks (tested): a source text words its facts differently from every rule's output, so no
output is a substring of its own input (for LaMP-7 the input is a neutral rewording of the tweet,
as LaMP-7's inputs are model paraphrases); and a question's gold output never appears among its own
user's profile outputs (profile items are redrawn until they differ from the held-out outputs).
Besides ``rules.json`` the writer keeps ``facts.json`` (the facts of every profile item and question),
so Pref-LaMP can render the same facts under another user's rule (``rejected="other_rule"``).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ..core.io import write_json
from .lamp import norm_text

RULES = {
    "question": "asks a question: the output ends with '?'",
    "colon": "topic first, then a colon: 'Topic: ...'",
    "lowercase": "writes everything in lower case",
    "number": "starts with a number: '3 reasons ...'",
    "short": "terse: at most 4 words",
    "vocab": "a favourite opening word (vocab:<word>), e.g. 'Finally ...'",
    "exclaim": "ends with an exclamation mark",
    "hashtag": "ends with a hashtag of the topic",
}
FAVOURITE_WORDS = ["finally", "officially", "remarkably", "honestly", "quietly", "surprisingly"]

SUBJECTS = ["the city council", "a farmers union", "the central bank", "a startup", "the school board",
            "a volunteer group", "the museum", "city engineers", "the football club", "state regulators",
            "the hospital", "a research team", "the orchestra", "airport officials", "the library"]
VERBS = [("approves", "approve"), ("unveils", "unveil"), ("rejects", "reject"), ("expands", "expand"),
         ("delays", "delay"), ("launches", "launch"), ("funds", "fund"), ("cancels", "cancel"),
         ("celebrates", "celebrate"), ("reviews", "review")]
OBJECTS = [("budget", "a new budget for public schools"), ("bridge", "plans for a river bridge"),
           ("rates", "changes to interest rates"), ("app", "a mobile app for commuters"),
           ("park", "a renovated downtown park"), ("festival", "the annual summer festival"),
           ("solar", "a rooftop solar programme"), ("housing", "an affordable housing project"),
           ("transit", "late night bus routes"), ("water", "a clean water initiative"),
           ("museum", "an exhibition of local art"), ("jobs", "a training scheme for young workers")]
PLACES = ["in Springfield", "downtown", "across the county", "near the harbour", "in the north district",
          "on the east side", "at the old market"]
METHODS = [("transformers", "transformer models"), ("graphs", "graph neural networks"),
           ("bandits", "contextual bandits"), ("diffusion", "diffusion models"), ("kernels", "kernel methods"),
           ("retrieval", "retrieval augmentation"), ("pruning", "structured pruning"), ("distillation", "knowledge distillation")]
PROBLEMS = ["protein folding", "traffic forecasting", "machine translation", "image segmentation",
            "drug discovery", "speech recognition", "code generation", "weather prediction", "recommendation"]
# LaMP-7 tweets: (topic, first-person activity, a neutral rewording of it) x (when, its rewording). The
# query input is the rewording (LaMP-7's own inputs are model paraphrases of the user's tweets), so no
# rule's output is contained in it.
ACTIVITIES = [("coffee", "had a great coffee with friends", "enjoyed a coffee in good company"),
              ("rain", "got caught in the rain on the way home", "was soaked by a downpour while walking back"),
              ("gym", "finished a long workout at the gym", "completed a lengthy training session"),
              ("concert", "saw an amazing concert", "attended a fantastic live show"),
              ("exam", "passed the exam after weeks of study", "cleared the test following a long stretch of revision"),
              ("bus", "waited an hour for the bus again", "spent sixty minutes at the stop once more"),
              ("garden", "planted tomatoes in the garden", "put tomato seedlings in the soil"),
              ("movie", "watched an old movie with my family", "enjoyed a classic film with relatives"),
              ("cat", "my cat knocked everything off the desk", "the family pet swept the desk clean"),
              ("beach", "spent hours at the beach", "passed a long stretch by the sea")]
WHENS = [("this morning", "early in the day"), ("last night", "in the evening yesterday"), ("today", "earlier on"),
         ("on Saturday", "at the weekend"), ("after work", "once the working day was over"),
         ("yesterday", "the day before")]
FILLER = ["Officials said more details would follow next week.", "The decision followed months of debate.",
          "Residents had mixed reactions.", "Critics questioned the cost.", "Supporters welcomed the news.",
          "A public meeting is planned for next month.", "The plan still needs final approval."]


def _facts(task: str, rng: random.Random) -> dict:
    """Facts of one item: the neutral ``base`` output, the ``source`` text (article, abstract, or the
    tweet's neutral rewording), the ``topic`` and a number ``n``. No rule's output is a substring of the
    source (case-insensitively): the source words the same facts differently (tested)."""
    if task == "LaMP-4":
        subj, (v3, v1), (topic, obj), place = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                                                rng.choice(PLACES))
        base = f"{subj[0].upper()}{subj[1:]} {v3} {obj} {place}"
        source = " ".join([f"In a statement on Monday, {subj} said it would {v1} {obj} {place}.",
                           f"The move affects about {rng.randint(2, 90)} hundred people."] + rng.sample(FILLER, 3))
    elif task == "LaMP-5":
        (topic, meth), prob, gain = rng.choice(METHODS), rng.choice(PROBLEMS), rng.randint(3, 40)
        base = f"Improving {prob} with {meth} at scale"
        source = (f"We study {prob}. Existing approaches struggle with noisy data. We propose a method based on "
                  f"{meth} that is simple to train. Experiments on three benchmarks show a {gain} percent "
                  f"improvement over strong baselines. We release our code.")
    elif task == "LaMP-7":
        (topic, what, reworded), (when, when_reworded) = rng.choice(ACTIVITIES), rng.choice(WHENS)
        base = f"{what} {when}" if what.startswith("my ") else f"I {what} {when}"
        base = base[0].upper() + base[1:]
        source = f"{reworded[0].upper()}{reworded[1:]} {when_reworded}"
    else:
        raise ValueError(f"unknown task {task!r}; synthetic tasks: LaMP-4, LaMP-5, LaMP-7")
    return {"topic": topic, "base": base, "source": source, "n": rng.randint(2, 9)}


def _lower_first(s: str) -> str:
    return s[0].lower() + s[1:] if s and not s.startswith("I ") else s


def apply_rule(rule: str, facts: dict) -> str:
    """The user's own output for these facts under their latent rule."""
    base, topic = facts["base"], facts["topic"]
    name, _, word = rule.partition(":")
    if name == "question":
        return f"Why {_lower_first(base)}?"
    if name == "colon":
        return f"{topic.capitalize()}: {_lower_first(base)}"
    if name == "lowercase":
        return base.lower()
    if name == "number":
        return f"{facts['n']} reasons {_lower_first(base)}"
    if name == "short":
        return " ".join(base.split()[:4])
    if name == "vocab":
        return f"{word.capitalize()} {_lower_first(base)}"
    if name == "exclaim":
        return base + "!"
    if name == "hashtag":
        return f"{base} #{topic}"
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


def follows_rule(rule: str | None, text: str) -> bool:
    """Whether ``text`` follows a synthetic user's latent rule (the rule checkers of :data:`RULES`)."""
    if not rule:
        raise ValueError("follows_rule needs a rule (real LaMP users have none)")
    t = text.strip().strip('"').strip()
    name, _, word = rule.partition(":")
    checks = {
        "question": lambda: t.endswith("?"),
        "colon": lambda: ":" in t.split()[0] if t.split() else False,
        "lowercase": lambda: any(c.isalpha() for c in t) and t == t.lower(),
        "number": lambda: bool(re.match(r"^\d", t)),
        "short": lambda: 0 < len(t.split()) <= 4,
        "vocab": lambda: t.lower().startswith(word),
        "exclaim": lambda: t.endswith("!"),
        "hashtag": lambda: bool(re.search(r"#\w+$", t)),
    }
    if name not in checks:
        raise ValueError(f"unknown rule {rule!r}")
    return checks[name]()


def user_rules(n_users: int, rng: random.Random) -> list[str]:
    """Rules assigned round-robin over a shuffled list, so every rule has users."""
    names = list(RULES)
    rng.shuffle(names)
    out = []
    for i in range(n_users):
        name = names[i % len(names)]
        out.append(f"vocab:{rng.choice(FAVOURITE_WORDS)}" if name == "vocab" else name)
    return out


def _profile_item(task: str, pid: str, facts: dict, rule: str) -> dict:
    out = apply_rule(rule, facts)
    if task == "LaMP-4":
        return {"id": pid, "text": facts["source"], "title": out}
    if task == "LaMP-5":
        return {"id": pid, "abstract": facts["source"], "title": out}
    return {"id": pid, "text": out}


def generate_task(task: str, n_users: int, profile_size: int, queries_per_user: int, seed: int,
                  id_prefix: str = "0", max_tries: int = 1000):
    """(questions, outputs, rules, facts) for one task, in the LaMP layout (``facts``: item or question
    id -> the facts it was rendered from).

    A user's held-out questions are drawn first; then each profile item is redrawn until its output
    differs (case- and space-insensitively) from every held-out gold output of that user, so a query's
    answer never sits in its own user's profile. A pure function of the arguments.
    """
    from .lamp import TASKS

    rng = random.Random(f"{task}-{seed}")
    rules = user_rules(n_users, rng)
    questions, golds, rule_of, facts_of = [], [], {}, {}
    num = TASKS[task].num
    for u, rule in enumerate(rules):
        uid = f"{num}{id_prefix}{u:03d}"
        qfacts = [_facts(task, rng) for _ in range(queries_per_user)]
        held_out = {norm_text(apply_rule(rule, f)) for f in qfacts}
        profile = []
        for j in range(profile_size):
            for _ in range(max_tries):
                facts = _facts(task, rng)
                if norm_text(apply_rule(rule, facts)) not in held_out:
                    break
            else:
                raise RuntimeError(f"{task}: no profile item for rule {rule!r} differs from the held-out outputs "
                                   f"after {max_tries} draws")
            pid = f"{uid}p{j:03d}"
            profile.append(_profile_item(task, pid, facts, rule))
            facts_of[pid] = facts
        for q, facts in enumerate(qfacts):
            qid = f"{uid}q{q}"
            questions.append({"id": qid, "input": TASKS[task].instruction + facts["source"], "profile": profile})
            golds.append({"id": qid, "output": apply_rule(rule, facts)})
            rule_of[qid] = rule
            facts_of[qid] = facts
    return questions, {"task": TASKS[task].lamp_name, "golds": golds}, rule_of, facts_of


def write_synthetic_lamp(root: str | Path, tasks=("LaMP-4", "LaMP-5", "LaMP-7"), n_users: int = 10,
                         profile_size: int = 12, queries_per_user: int = 2, seed: int = 0,
                         splits=("train", "dev")) -> Path:
    """Write a synthetic LaMP corpus under ``root`` (same layout as the download) plus two side files
    that the LaMP loader ignores: ``rules.json`` (question id -> the user's rule, per ``task/split``)
    and ``facts.json`` (profile item or question id -> its facts, per ``task/split``; what
    ``rejected="other_rule"`` re-renders under another user's rule).

    Deterministic per seed: the same arguments give the same bytes.
    """
    from .lamp import SPLITS, file_path

    check_tasks(tasks)
    bad = [sp for sp in ([splits] if isinstance(splits, str) else splits) if sp not in SPLITS]
    if isinstance(splits, str) or bad:
        raise ValueError(f"splits must be a list drawn from {list(SPLITS)}, got {splits!r}")
    root = Path(root)
    all_rules, all_facts, files = {}, {}, []
    for task in tasks:  # everything is generated before anything is written: a failure writes nothing
        for si, split in enumerate(splits):
            q, o, rules, facts = generate_task(task, n_users, profile_size, queries_per_user, seed * 1000 + si,
                                               str(si))
            files += [(file_path(root, task, split, "questions"), q), (file_path(root, task, split, "outputs"), o)]
            all_rules[f"{task}/{split}"] = rules
            all_facts[f"{task}/{split}"] = facts
    for f, obj in files:
        write_json(f, obj)
    write_json(root / "rules.json", {"seed": seed, "rules": all_rules, "descriptions": RULES})
    write_json(root / "facts.json", {"seed": seed, "facts": all_facts})
    return root


def check_tasks(tasks) -> None:
    """``ValueError`` listing the supported tasks if ``tasks`` (a list of names) holds an unknown one."""
    from .lamp import TASKS

    if isinstance(tasks, str):
        raise ValueError(f"tasks must be a list of task names, got the string {tasks!r} "
                         f"(e.g. [{tasks!r}]); supported: {', '.join(TASKS)}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        hints = [f"{t!r} -> {k!r}" for t in unknown for k in TASKS
                 if isinstance(t, str) and t.lower().replace("_", "-") == k.lower()]
        raise ValueError(f"unknown synthetic task(s) {unknown}; supported: {', '.join(TASKS)}"
                         + (f" (did you mean {', '.join(hints)}?)" if hints else ""))


def load_facts(root: str | Path) -> dict:
    """``task/split`` -> id -> facts, from a synthetic corpus's ``facts.json``."""
    f = Path(root) / "facts.json"
    if not f.exists():
        raise FileNotFoundError(f"{f} missing: regenerate the synthetic corpus (write_synthetic_lamp) to get "
                                "the facts that rejected='other_rule' re-renders")
    return json.loads(f.read_text(encoding="utf-8"))["facts"]


def prepare_corpus(corpus: str, root, tasks=("LaMP-4", "LaMP-5", "LaMP-7"), split: str = "dev",
                   download: bool = False, n_users: int = 10, profile_size: int = 12, queries_per_user: int = 2,
                   seed: int = 0):
    """Notebook 01's corpus, in the LaMP layout under ``root``, and a table describing it.

    ``"synthetic"`` writes the seeded corpus (:func:`write_synthetic_lamp`, both splits) and returns its rules
    (``rule``, ``meaning``); ``"lamp"`` uses the official files of ``split`` placed there by hand, or downloads and
    validates them first with ``download=True`` (:func:`lib.data.lamp.download`), and returns the files
    (``task``, ``file``, ``bytes``). A missing LaMP file is a ``FileNotFoundError`` naming it and both remedies.
    """
    import pandas as pd

    from . import lamp

    if corpus == "synthetic":
        write_synthetic_lamp(root, tasks=tasks, n_users=n_users, profile_size=profile_size,
                             queries_per_user=queries_per_user, seed=seed)
        return pd.DataFrame(RULES.items(), columns=["rule", "meaning"])
    if corpus != "lamp":
        raise ValueError(f"corpus must be 'synthetic' or 'lamp', got {corpus!r}")
    if download:
        lamp.download(root, tasks=tasks, splits=[split])
    files = [(t, lamp.file_path(root, t, split, kind)) for t in tasks for kind in ("questions", "outputs")]
    missing = [str(f) for _, f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"LaMP file(s) missing: {', '.join(missing)}; place the official files there "
                                "(same layout as the download) or set download=True")
    return pd.DataFrame([{"task": t, "file": str(Path(f).relative_to(root)), "bytes": f.stat().st_size}
                         for t, f in files])
