"""The LaMP benchmark (Salemi et al., 2023): download, validate, load.

Tasks used here (user-based split; test golds are withheld upstream, so ``train`` and ``dev``):
LaMP-4 news headlines, LaMP-5 scholarly titles, LaMP-7 tweet paraphrasing.

Files, in the official layout (also the layout of the local folder and of the synthetic corpus)::

    <root>/LaMP_4/train/train_questions.json   [{"id", "input", "profile": [{"id", ...}]}]
    <root>/LaMP_4/train/train_outputs.json     {"task": "LaMP_4", "golds": [{"id", "output"}]}

:func:`download` fetches from the official location with retries, validates every file before it is
kept (the server answers a wrong path with HTTP 200 and an HTML page), writes atomically and records
sha256 and size in ``<root>/manifest.json``. A pair of files already in place but not in the manifest
(copied by hand) is validated the same way and recorded with ``"source": "local"``, never downloaded
again; an invalid one is an error naming it (``force=True`` re-downloads). :func:`load_task` reads a
folder with no network. Files must be UTF-8 (a UTF-8 byte-order mark is accepted): UTF-16/32, other bytes
or an HTML page raise :class:`lib.core.io.BadFileError` (:func:`lib.core.io.decode_text`, the project's one UTF-8
check); every other problem raises :class:`LaMPFormatError` (a ``BadFileError``) naming the file, the record
and the field.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.io import BadFileError, atomic_path, decode_text, loads, sha256_file, write_json

BASE_URL = "https://ciir.cs.umass.edu/downloads/LaMP"


@dataclass(frozen=True)
class TaskSpec:
    num: int
    instruction: str  # prefix of every LaMP input of the task
    source_field: str | None  # profile field with the text the output is about (None: LaMP-7)
    output_field: str  # profile field with the user's own output

    @property
    def lamp_name(self) -> str:
        return f"LaMP_{self.num}"


TASKS = {
    "LaMP-4": TaskSpec(4, "Generate a headline for the following article: ", "text", "title"),
    "LaMP-5": TaskSpec(5, "Generate a title for the following abstract of a paper: ", "abstract", "title"),
    "LaMP-7": TaskSpec(7, "Paraphrase the following tweet without any explanation before or after it: ", None, "text"),
}
SPLITS = ("train", "dev")


class LaMPFormatError(BadFileError):
    """A LaMP file is not what it should be; the message names file, record and field."""

    def __init__(self, file, problem: str, record=None, field: str | None = None):
        where = str(file)
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


def norm_text(text: str) -> str:
    """The case- and whitespace-insensitive form in which outputs, paraphrases and rendered facts are compared."""
    return " ".join(text.lower().split())


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise KeyError(f"unknown LaMP task {task!r}; supported: {', '.join(TASKS)}")
    return TASKS[task]


def file_path(root, task: str, split: str, kind: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} (test golds are not public), got {split!r}")
    return Path(root) / task_spec(task).lamp_name / split / f"{split}_{kind}.json"


def url(task: str, split: str, kind: str, base_url: str = BASE_URL) -> str:
    return f"{base_url}/{task_spec(task).lamp_name}/{split}/{split}_{kind}.json"


# --- validation -----------------------------------------------------------------------------

def parse_json(data: bytes, file) -> object:
    """The JSON value of a LaMP file's bytes; not UTF-8 or an HTML page: :class:`lib.core.io.BadFileError`."""
    text = decode_text(file, data)
    try:
        return loads(file, text)
    except json.JSONDecodeError as e:
        raise LaMPFormatError(file, f"invalid or truncated JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _need_str(obj: dict, field: str, file, record):
    if field not in obj:
        raise LaMPFormatError(file, "missing field", record, field)
    if not isinstance(obj[field], str):
        raise LaMPFormatError(file, f"expected a string, got {type(obj[field]).__name__}", record, field)
    return obj[field]


def validate_questions(obj, task: str, file) -> list[dict]:
    spec = task_spec(task)
    if not isinstance(obj, list):
        raise LaMPFormatError(file, f"expected a JSON list of questions, got {type(obj).__name__}")
    if not obj:
        raise LaMPFormatError(file, "the list of questions is empty (an interrupted download or export?)")
    seen = set()
    for i, q in enumerate(obj):
        if not isinstance(q, dict):
            raise LaMPFormatError(file, "expected an object", i)
        qid = _need_str(q, "id", file, i)
        rec = f"{i} (id {qid})"
        if qid in seen:
            raise LaMPFormatError(file, "duplicate question id", rec, "id")
        seen.add(qid)
        _need_str(q, "input", file, rec)
        if not q["input"].startswith(spec.instruction.strip()[:20]):
            raise LaMPFormatError(file, f"input does not look like a {task} input ({q['input'][:40]!r})", rec, "input")
        if "profile" not in q:
            raise LaMPFormatError(file, "missing field", rec, "profile")
        if not isinstance(q["profile"], list):
            raise LaMPFormatError(file, f"expected a list, got {type(q['profile']).__name__}", rec, "profile")
        for j, item in enumerate(q["profile"]):
            prec = f"{rec} profile[{j}]"
            if not isinstance(item, dict):
                raise LaMPFormatError(file, "expected an object", prec)
            _need_str(item, "id", file, prec)
            _need_str(item, spec.output_field, file, prec)
            if spec.source_field:
                _need_str(item, spec.source_field, file, prec)
    return obj


def validate_outputs(obj, task: str, file) -> dict[str, str]:
    spec = task_spec(task)
    if not isinstance(obj, dict):
        raise LaMPFormatError(file, f"expected a JSON object {{task, golds}}, got {type(obj).__name__}")
    if obj.get("task") != spec.lamp_name:
        raise LaMPFormatError(file, f"expected {spec.lamp_name!r}, got {obj.get('task')!r}", None, "task")
    if not isinstance(obj.get("golds"), list):
        raise LaMPFormatError(file, "missing or not a list", None, "golds")
    golds = {}
    for i, g in enumerate(obj["golds"]):
        if not isinstance(g, dict):
            raise LaMPFormatError(file, "expected an object", f"golds[{i}]")
        gid = _need_str(g, "id", file, f"golds[{i}]")
        if gid in golds:
            raise LaMPFormatError(file, "duplicate gold id", f"golds[{i}] (id {gid})", "id")
        golds[gid] = _need_str(g, "output", file, f"golds[{i}] (id {gid})")
    return golds


def check_ids_match(questions: list[dict], golds: dict[str, str], qfile, ofile) -> None:
    qids = {q["id"] for q in questions}
    only_q, only_o = sorted(qids - golds.keys()), sorted(golds.keys() - qids)
    if only_q or only_o:
        raise LaMPFormatError(f"{qfile} vs {ofile}", f"question and output ids do not match: "
                              f"{len(only_q)} questions without output (e.g. {only_q[:3]}), "
                              f"{len(only_o)} outputs without question (e.g. {only_o[:3]})")


# --- loading ----------------------------------------------------------------------------------

def _read(file) -> object:
    file = Path(file)
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist; run `make data` (download) or point to a local LaMP folder")
    return parse_json(file.read_bytes(), file)


def load_task(root, task: str, split: str) -> list[dict]:
    """Questions of one task and split with their gold output merged in (``q["output"]``)."""
    qf, of = file_path(root, task, split, "questions"), file_path(root, task, split, "outputs")
    questions = validate_questions(_read(qf), task, qf)
    golds = validate_outputs(_read(of), task, of)
    check_ids_match(questions, golds, qf, of)
    return [{**q, "output": golds[q["id"]]} for q in questions]


# --- download ---------------------------------------------------------------------------------

def _fetch(u: str, retries: int, timeout: float, backoff: float) -> bytes:
    import requests

    last = None
    for attempt in range(retries):
        try:
            r = requests.get(u, timeout=timeout)
            if r.status_code == 200:
                return r.content
            last = f"HTTP {r.status_code}"
            if 400 <= r.status_code < 500 and r.status_code != 429:
                break  # a wrong path does not heal with retries
        except requests.RequestException as e:
            last = f"{type(e).__name__}: {e}"
        if attempt + 1 < retries:
            time.sleep(backoff * 2**attempt)
    raise ConnectionError(f"could not download {u} after {retries} tries ({last}). Without internet, put the "
                          "LaMP files in the same layout in a local folder and pass it as lamp_root.")


def _adopt_local(root: Path, task: str, split: str, manifest: dict) -> bool:
    """Record a (task, split) whose files were put in place by hand (not in the manifest) once they
    validate, with ``"source": "local"``; False when neither file is there. An invalid or lone
    hand-placed file raises, naming it: it is never overwritten silently."""
    files = [file_path(root, task, split, kind) for kind in ("questions", "outputs")]
    present = [f for f in files if f.exists() and str(f.relative_to(root)) not in manifest]
    if not present:
        return False
    missing = [f for f in files if not f.exists()]
    if missing:
        raise LaMPFormatError(present[0], f"placed by hand without its partner {missing[0].name}: add it, or "
                                          "pass force=True to download both files (this one is overwritten)")
    load_task(root, task, split)  # validators name the file, record and field
    for f in files:
        manifest[str(f.relative_to(root))] = {"source": "local", "sha256": sha256_file(f), "bytes": f.stat().st_size}
    return True


def download(root, tasks=tuple(TASKS), splits=SPLITS, base_url: str = BASE_URL, retries: int = 4,
             timeout: float = 120, backoff: float = 2.0, force: bool = False) -> dict:
    """Download, validate and cache LaMP files; return the manifest (also written to root/manifest.json).

    A file is kept only once both files of a (task, split) parse and validate and their ids match;
    each is written atomically, so a failure leaves no partial or invalid file behind. Files already
    there but not in the manifest (placed by hand) are validated and recorded with ``"source": "local"``
    instead of downloaded; an invalid one raises :class:`LaMPFormatError` naming it. ``force=True``
    downloads everything again.
    """
    root = Path(root)
    mpath = root / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    for task in tasks:
        for split in splits:
            qf, of = file_path(root, task, split, "questions"), file_path(root, task, split, "outputs")
            if not force and qf.exists() and of.exists() and str(qf.relative_to(root)) in manifest:
                continue
            if not force and _adopt_local(root, task, split, manifest):
                write_json(mpath, manifest)
                continue
            blobs = {}
            for kind, f in (("questions", qf), ("outputs", of)):
                u = url(task, split, kind, base_url)
                data = _fetch(u, retries, timeout, backoff)
                blobs[kind] = (u, f, data, parse_json(data, u))
            questions = validate_questions(blobs["questions"][3], task, blobs["questions"][0])
            golds = validate_outputs(blobs["outputs"][3], task, blobs["outputs"][0])
            check_ids_match(questions, golds, blobs["questions"][0], blobs["outputs"][0])
            for u, f, data, _ in blobs.values():
                with atomic_path(f) as tmp:
                    tmp.write_bytes(data)
                manifest[str(f.relative_to(root))] = {"url": u, "sha256": sha256_file(f), "bytes": f.stat().st_size}
            write_json(mpath, manifest)
    return manifest
