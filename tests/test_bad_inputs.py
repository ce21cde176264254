"""Bad inputs end in a clear error naming the file (and line / record / field / key), and writes are
atomic: nothing partial is left behind. Tiny fixtures, no language models."""
from __future__ import annotations

import errno
import gzip
import importlib.util
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from lib import rewards
from lib.core import io
from lib.data import prefdata, synthetic
from lib.rewards import features


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ------------------------------------------------------------------------------ feature cache (.pt)
class FakeFeat:
    name, kind, dim, max_length = "fake", "encoder_mean", 4, 8

    def __init__(self):
        self.calls = 0

    def features(self, prompts, responses, progress=False):
        self.calls += 1
        return torch.arange(len(prompts) * self.dim, dtype=torch.float32).reshape(len(prompts), self.dim)


PROMPTS, RESPONSES = ["p1", "p2", "p3"], ["r1", "r2", "r3"]


def _cache_file(tmp_path) -> tuple[FakeFeat, Path]:
    feat = FakeFeat()
    x = features.cached_features(feat, PROMPTS, RESPONSES, tmp_path, progress=False)
    (f,) = tmp_path.glob("*.pt")
    assert x.shape == (3, 4) and feat.calls == 1 and _leftovers(tmp_path, {f.name}) == []
    return feat, f


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "wrong_rows", "wrong_dim", "not_tensor"])
def test_corrupt_feature_cache_names_file_and_says_delete(tmp_path, kind):
    feat, f = _cache_file(tmp_path)
    good = f.read_bytes()
    if kind == "empty":
        f.write_bytes(b"")
        why = "empty file"
    elif kind == "truncated":
        f.write_bytes(good[: len(good) // 2])
        why = "truncated"
    elif kind == "garbage":
        f.write_bytes(b"this is not a torch file\n" * 10)
        why = "not a torch file"
    elif kind == "wrong_rows":
        torch.save(torch.zeros(2, 4), f)
        why = r"shape \[2, 4\] where \[3, 4\]"
    elif kind == "wrong_dim":
        torch.save(torch.zeros(3, 5), f)
        why = r"shape \[3, 5\] where \[3, 4\]"
    else:
        torch.save({"a": torch.zeros(3, 4)}, f)
        why = "holds a dict"
    with pytest.raises(features.CorruptCacheError, match=re.escape(str(f)) + r".*corrupt \(.*" + why) as e:
        features.cached_features(feat, PROMPTS, RESPONSES, tmp_path, progress=False)
    assert "delete it and the next run recomputes it" in str(e.value)
    assert "weights_only=False" not in str(e.value)
    assert isinstance(e.value, ValueError)
    f.unlink()  # as the message says: the next run recomputes
    assert features.cached_features(feat, PROMPTS, RESPONSES, tmp_path, progress=False).shape == (3, 4)
    assert feat.calls == 2


def test_feature_cache_write_is_atomic(tmp_path, monkeypatch):
    def dies_midway(obj, f):
        Path(f).write_bytes(b"PK\x03\x04partial")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        features.cached_features(FakeFeat(), PROMPTS, RESPONSES, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither a truncated cache nor a temporary file


# ------------------------------------------------------------------------------ read_jsonl
def test_read_jsonl_empty_file_is_no_records(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert io.read_jsonl(tmp_path / "e.jsonl") == []


def test_read_jsonl_truncated_last_line(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "unfin')
    with pytest.raises(io.BadFileError, match=r"t\.jsonl: line 3: the file ends inside a record \(truncated\?"):
        io.read_jsonl(f)
    f.write_text('{"a": 1}\n{"a": 2,\n{"a": 3}\n')  # a bad line in the middle is not a truncation
    with pytest.raises(io.BadFileError, match=r"t\.jsonl: line 2: invalid JSON") as e:
        io.read_jsonl(f)
    assert "ends inside a record" not in str(e.value) and "column 9" in str(e.value)


def test_read_jsonl_html_page(tmp_path):
    f = tmp_path / "page.jsonl"
    f.write_text("  \n<!DOCTYPE html>\n<html><body>Rate limited</body></html>\n")
    with pytest.raises(io.BadFileError, match=r"page\.jsonl: got an HTML page where JSON was expected"):
        io.read_jsonl(f)


@pytest.mark.parametrize("enc,found", [("utf-16", "UTF-16-LE byte-order mark"), ("utf-32", "UTF-32-LE byte-order mark"),
                                       ("utf-16-le", r"NUL bytes \(UTF-16-LE"), ("utf-16-be", r"NUL bytes \(UTF-16-BE"),
                                       ("utf-32-le", r"NUL bytes \(UTF-32-LE"), ("utf-32-be", r"NUL bytes \(UTF-32-BE")])
def test_read_jsonl_utf16_utf32(tmp_path, enc, found):
    f = tmp_path / "wide.jsonl"
    f.write_bytes('{"a": "é"}\n'.encode(enc))
    with pytest.raises(io.BadFileError, match=r"wide\.jsonl: " + found + r".*must be UTF-8.*iconv -f UTF-"):
        io.read_jsonl(f)


def test_read_jsonl_latin1_names_line(tmp_path):
    f = tmp_path / "latin.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(io.BadFileError, match=r"latin\.jsonl: line 2: byte 0xe9 is not valid UTF-8.*iconv"):
        io.read_jsonl(f)


def test_read_jsonl_keeps_unicode_line_separators(tmp_path):
    f = io.write_jsonl(tmp_path / "u.jsonl", [{"t": "a\u2028b\x1ec"}, {"t": "x"}])  # raw U+2028 in a record
    assert io.read_jsonl(f) == [{"t": "a\u2028b\x1ec"}, {"t": "x"}]


# ------------------------------------------------------------------------------ preference-set files
def tldr_rows(n_workers=3, n=4):
    return [{"info": {"id": f"t{w}{j}", "post": f"post {j}", "title": f"T{j}", "subreddit": "cats"},
             "summaries": [{"text": f"a {w}-{j}"}, {"text": f"b {w}-{j}"}], "choice": j % 2, "worker": f"w{w}"}
            for w in range(n_workers) for j in range(n)]


def _lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_good_local_files_still_load(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(tldr_rows()))  # a JSON array
    (tmp_path / "b.json").write_text(_lines(tldr_rows()))  # JSON lines named .json (as on the hub)
    (tmp_path / "c.jsonl").write_text(_lines(tldr_rows()))
    n = len(prefdata.load("tldr", path=tmp_path / "c.jsonl"))
    assert n and len(prefdata.load("tldr", path=tmp_path / "a.json")) == n
    assert len(prefdata.load("tldr", path=tmp_path / "b.json")) == n


BAD_FILES = {  # name -> (bytes of the file, what the error says after "<file>: ")
    "empty": (b"\n  \n", r"empty file"),
    "html": (b"<html><head><title>404 Not Found</title></head></html>", r"got an HTML page where JSON was expected"),
    "utf16": (_lines(tldr_rows()).encode("utf-16"),
              r"UTF-16-LE byte-order mark: the file must be UTF-8; convert it with `iconv -f UTF-16 -t UTF-8"),
    # a .json.gz saved under the .json name was once diagnosed as UTF-16 (its NUL bytes)
    "gzip": (gzip.compress(_lines(tldr_rows()).encode()),
             r"gzip-compressed data where JSON text was expected: decompress it first \(`gunzip -c"),
    "zip": (b"PK\x03\x04" + bytes(40), r"zip-compressed data where JSON text was expected"),
    "deep": (b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"\n", r"(line 1: )?JSON nested too deeply to read"),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_prefdata_bad_file_named(tmp_path, case, suffix):
    raw, says = BAD_FILES[case]
    f = tmp_path / f"{case}{suffix}"
    f.write_bytes(raw)
    with pytest.raises(ValueError, match=re.escape(f"{case}{suffix}") + ": " + says):
        prefdata.load("tldr", path=f)


@pytest.mark.parametrize("case", ["gzip", "deep"])
def test_lamp_and_jsonl_readers_name_compressed_and_deep_files(tmp_path, case):
    from lib.data import lamp

    raw, says = BAD_FILES[case]
    f = tmp_path / "dev_questions.json"
    f.write_bytes(raw)
    with pytest.raises(io.BadFileError, match="dev_questions.json: " + says):
        lamp.parse_json(raw, f)
    with pytest.raises(io.BadFileError, match="dev_questions.json: " + says):
        io.read_jsonl(f)


def test_prefdata_jsonl_bad_line(tmp_path):
    text = _lines(tldr_rows()).splitlines()
    text[2] = text[2][:-1] + ",}"
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3: invalid JSON \(Expecting property name"):
        prefdata.load("tldr", path=f)


def test_prefdata_jsonl_not_an_object(tmp_path):
    f = tmp_path / "arr.jsonl"
    f.write_text(_lines(tldr_rows()[:2]) + "[1, 2]\n")
    with pytest.raises(ValueError, match=r"arr\.jsonl: line 3: expected a JSON object"):
        prefdata.load("tldr", path=f)


def test_prefdata_jsonl_truncated(tmp_path):
    text = _lines(tldr_rows())
    f = tmp_path / "cut.jsonl"
    f.write_text(text[: len(text) - 40])
    n = text[: len(text) - 40].count("\n") + 1
    with pytest.raises(ValueError, match=rf"cut\.jsonl: line {n}: the file ends inside a record \(truncated\?"):
        prefdata.load("tldr", path=f)


def test_prefdata_json_error_line_and_column(tmp_path):
    f = tmp_path / "doc.json"
    f.write_text(json.dumps(tldr_rows(), indent=1).replace('"choice": 1', '"choice": 1,', 1))
    with pytest.raises(ValueError, match=r"doc\.json: line \d+, column \d+: invalid JSON \(Expecting") as e:
        prefdata.load("tldr", path=f)
    line = int(re.search(r"line (\d+)", str(e.value)).group(1))
    assert f.read_text().splitlines()[line - 1].strip() == '"choice": 1,,'  # the line with the stray comma


def test_prefdata_json_truncated(tmp_path):
    f = tmp_path / "cut.json"
    text = json.dumps(tldr_rows(), indent=1)
    f.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"cut\.json: line \d+, column \d+: the file ends inside a record \(truncated\?"):
        prefdata.load("tldr", path=f)


def test_prefdata_json_lines_in_dot_json_bad_line(tmp_path):
    text = _lines(tldr_rows()).splitlines()
    text[4] = "{oops}"
    f = tmp_path / "batch1.json"
    f.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"batch1\.json: line 5: invalid JSON"):
        prefdata.load("tldr", path=f)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_prefdata_bad_parquet(tmp_path, kind):
    (tmp_path / "d").mkdir()
    good, bad = tmp_path / "d" / "a.parquet", tmp_path / "d" / "b.parquet"
    pd.DataFrame(tldr_rows()).to_parquet(good)
    data = good.read_bytes()
    bad.write_bytes({"garbage": b"definitely not parquet", "truncated": data[: len(data) - 30], "empty": b""}[kind])
    with pytest.raises(ValueError, match=r"b\.parquet: not a valid parquet file \("):
        prefdata.load("tldr", path=tmp_path / "d")
    assert len(prefdata.load("tldr", path=good))  # the good one alone still loads


# ------------------------------------------------------------------------------ atomic writes
def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _old_dir(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "sub").mkdir()
    (out / "sub" / "b.txt").write_text("old b")
    return out


def test_atomic_dir_failing_body_keeps_old(tmp_path):
    out = _old_dir(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with io.atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("new a")
            raise RuntimeError("boom")
    assert _tree(out) == {"a.txt": "old a", "sub/b.txt": "old b"}
    assert _leftovers(tmp_path, {"out"}) == []


def test_atomic_dir_success_replaces(tmp_path):
    out = _old_dir(tmp_path)
    with io.atomic_dir(out) as tmp:
        (tmp / "c.txt").write_text("new c")
    assert _tree(out) == {"c.txt": "new c"}
    assert _leftovers(tmp_path, {"out"}) == []
    with io.atomic_dir(tmp_path / "fresh") as tmp:  # no old folder
        (tmp / "x").write_text("x")
    assert _tree(tmp_path / "fresh") == {"x": "x"} and _leftovers(tmp_path, {"out", "fresh"}) == []


def test_atomic_dir_rename_in_fails_puts_old_back(tmp_path, monkeypatch):
    out = _old_dir(tmp_path)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(dst) == out and Path(src).name.endswith(".tmp"):
            raise OSError("disk on fire")  # the step after the old folder was moved aside
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk on fire"):
        with io.atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("new a")
    assert [d for _, d in calls][0].endswith(".old")  # the old one was moved aside first ...
    assert _tree(out) == {"a.txt": "old a", "sub/b.txt": "old b"}  # ... and put back
    assert _leftovers(tmp_path, {"out"}) == []


def test_atomic_dir_kill_between_steps_keeps_old_copy_and_cleans_later(tmp_path, monkeypatch):
    out = _old_dir(tmp_path)
    real = os.replace

    def replace(src, dst):
        if Path(dst) == out:
            raise OSError("cannot move in")
        if Path(src) == out:
            return real(src, dst)
        raise OSError("cannot move back either")  # as if killed: the old copy stays aside

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match=r"the old content is in .*\.out\.[0-9a-f]{32}\.old"):
        with io.atomic_dir(out) as tmp:
            (tmp / "n").write_text("new")
    monkeypatch.setattr(os, "replace", real)
    (aside,) = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert not out.exists() and _tree(aside) == {"a.txt": "old a", "sub/b.txt": "old b"}  # nothing lost
    with io.atomic_dir(out) as tmp:  # out missing: the .old copy is not touched
        (tmp / "n").write_text("new")
    assert aside.exists()
    with io.atomic_dir(out) as tmp:  # out exists again: the stale copy goes
        (tmp / "n").write_text("newer")
    assert _tree(out) == {"n": "newer"} and _leftovers(tmp_path, {"out"}) == []


def test_atomic_path_unique_temp_and_cleanup(tmp_path):
    f = tmp_path / "x.json"
    with io.atomic_path(f) as a, io.atomic_path(f) as b:
        assert a != b and a.parent == b.parent == tmp_path and a.name.startswith(".x.json.")
        a.write_text("a")
        b.write_text("b")
    assert f.read_text() == "a" and _leftovers(tmp_path, {"x.json"}) == []  # the outer block renamed in last
    with pytest.raises(ValueError):
        with io.atomic_path(f) as t:
            t.write_text("partial")
            raise ValueError
    assert f.read_text() == "a" and _leftovers(tmp_path, {"x.json"}) == []


def _update_readme_module():
    path = Path(__file__).resolve().parents[1] / "scripts" / "update_readme.py"
    spec = importlib.util.spec_from_file_location("update_readme_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_update_readme_writes_atomically(tmp_path, monkeypatch):
    mod = _update_readme_module()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    (tmp_path / "figures" / "smoke").mkdir(parents=True)
    (tmp_path / "figures" / "smoke" / "summary.md").write_text("# Results\n\n## Table\n\nrow\n\n## Files\n\nx\n")
    (tmp_path / "README.md").write_text(f"intro\n{mod.START}\nold\n{mod.END}\ntail\n")
    (tmp_path / "README.md.tmp").write_text("someone else's file")  # the old fixed name is not used
    assert mod.main(["--profile", "smoke"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "### Table" in text and "old" not in text and text.endswith(f"{mod.END}\ntail\n")
    assert (tmp_path / "README.md.tmp").read_text() == "someone else's file"
    assert _leftovers(tmp_path, {"README.md", "README.md.tmp", "figures"}) == []


# ------------------------------------------------------------------------------ reward-model methods
def test_check_methods_unknown_method():
    assert rewards.check_methods(("bt", "lore")) == ["bt", "lore"]
    with pytest.raises(ValueError, match=r"unknown reward-model method\(s\) \['lora', 'BT'\]; known: \['bt', "):
        rewards.check_methods(["bt", "lora", "BT"])
    with pytest.raises(ValueError, match=r"got the string 'bt'"):
        rewards.check_methods("bt")


def test_check_methods_arch():
    rewards.check_methods(["lore"], {"user_embedding": {"emb_dim": 8}, "lore": {"rank": 4},
                                     "pal": {"n_prototypes": 4, "latent_dim": 16, "temperature": 0.1},
                                     "vpl": {"latent_dim": 8, "n_context": 8, "beta": 0.001}})  # notebook 02's
    with pytest.raises(ValueError, match=r"arch: unknown reward-model method\(s\) \['lroe'\]"):
        rewards.check_methods(["lore"], {"lroe": {"rank": 4}})
    with pytest.raises(ValueError, match=r"arch\['lore'\]: unknown option\(s\) \['rnak'\]; lore takes \['rank'\]"):
        rewards.check_methods(["lore"], {"lore": {"rnak": 4}})



@pytest.mark.parametrize("method,kw,says", [
    ("pal", {"n_prototypes": 0}, "n_prototypes must be a whole number >= 1, got 0"),
    ("pal", {"temperature": float("nan")}, "temperature must be a finite number > 0, got nan"),
    ("vpl", {"n_context": 0}, "n_context must be a whole number >= 1, got 0"),
    ("vpl", {"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),
    ("lore", {"rank": 2.5}, "rank must be a whole number >= 1, got 2.5"),
    ("user_embedding", {"emb_dim": -3}, "emb_dim must be a whole number >= 1, got -3"),
])
def test_meaningless_architecture_is_refused_up_front(method, kw, says):
    """A PAL with 0 prototypes or a VPL with 0 context pairs used to train into a constant reward, unflagged."""
    with pytest.raises(ValueError, match=re.escape(f"{method}: {says}")):
        rewards.METHODS[method]("b", "lm_last", 4, ["u1", "u2"], **kw)
    with pytest.raises(ValueError, match=re.escape(f"arch[{method!r}]: {method}: {says}")):
        rewards.check_methods([method], {method: kw})


def test_train_zoo_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"unknown reward-model method\(s\) \['nope'\]"):
        rewards.train_zoo([], None, "LaMP-4", tmp_path / "zoo", methods=["bt", "nope"], progress=False)
    assert not (tmp_path / "zoo").exists()


@pytest.mark.parametrize("kw,says", [({"seeds": []}, "seeds=[] is empty"),
                                     ({"hparams": {"lr": -1.0}}, "hparams={'lr': -1.0} has lr=-1.0"),
                                     ({"adapt_kw": {"steps": 0}}, "adapt={'steps': 0} has steps=0"),
                                     ({"n_resamples": 0}, "n_resamples=0 is out of range")])
def test_train_zoo_checks_its_settings_before_training(tmp_path, kw, says):
    with pytest.raises(ValueError, match=re.escape(f"train_zoo (LaMP-4): {says}")):
        rewards.train_zoo([], None, "LaMP-4", tmp_path / "zoo", methods=["bt"], progress=False, **kw)
    assert not (tmp_path / "zoo").exists()


def test_preflamp_build_checks_its_settings_before_reading(tmp_path):
    """max_pairs_per_user: 1 used to be reported as 'pairs identical to the policy output'."""
    from lib.data import preflamp

    with pytest.raises(ValueError, match=re.escape("preflamp.build: max_pairs_per_user=1 is out of range; allowed: "
                                                   "a whole number >= 2 (a train and a test pair per user)")):
        preflamp.build(tmp_path / "nowhere", tmp_path / "out", generator=lambda ps: ps, max_pairs_per_user=1)
    assert not (tmp_path / "out").exists()


def test_generation_parameters_are_checked_like_notebook_05s():
    from lib.evaluation import generation

    params = {k: None for k in generation.GENERATION_PARAMS} | {
        "seed": 0, "tasks": ["LaMP-4"], "icl_ks": [1], "icl_retriever": "bm25", "icl_max_tokens": 64,
        "rgd_ws": [0.5], "rgd_rms": "method_picks", "calibrated": True, "rgd_k": 4, "rm_backbones": "policy", "unknown_users": "error",
        "max_new_tokens": 8, "batch_size": 2, "rgd_batch_size": 0, "user_block": 2}
    with pytest.raises(ValueError, match=r"generation parameters: rgd_batch_size=0 is out of range"):
        generation._check_params(params)
    generation._check_params(params | {"rgd_batch_size": 4})


# ------------------------------------------------------------------------------ synthetic corpus
@pytest.mark.parametrize("tasks,match", [(["LaMP-4", "LaMP-9"], r"unknown synthetic task\(s\) \['LaMP-9'\]"),
                                         (["lamp-4"], r"\['lamp-4'\]"),
                                         ("LaMP-4", r"got the string 'LaMP-4'")])
def test_synthetic_unknown_task_writes_nothing(tmp_path, tasks, match):
    with pytest.raises(ValueError, match=match + r".*supported: LaMP-4, LaMP-5, LaMP-7") as e:
        synthetic.write_synthetic_lamp(tmp_path / "c", tasks=tasks, n_users=2, profile_size=2)
    assert tasks != ["lamp-4"] or "did you mean 'lamp-4' -> 'LaMP-4'" in str(e.value)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("damage, why", [
    (lambda f: f.write_bytes(b""), "empty file"),
    (lambda f: f.write_bytes(f.read_bytes()[:-40]), "truncated"),
    (lambda f: f.write_bytes(b"<html>not a tensor</html>"), "not a torch file"),
    (lambda f: torch.save({"chosen": torch.zeros(3, 4)}, f), "not the dict of pair feature tensors"),
])
def test_corrupt_pair_feature_cache_names_the_file(tmp_path, damage, why):
    """The pair-feature cache of notebook 02 (PairFeatures.compute): a damaged file is an error naming it, never
    torch's message (which may suggest weights_only=False)."""
    recs = [{"pair_id": f"p{i}", "prompt": f"q{i}", "chosen": f"a b c {i}", "rejected": f"d e {i}"} for i in range(3)]
    rewards.PairFeatures.compute(FakeFeat(), recs, n_prefix=1, cache_dir=tmp_path, progress=False)
    (f,) = tmp_path.glob("*-pairs-*.pt")
    damage(f)
    with pytest.raises(features.CorruptCacheError, match=re.escape(str(f)) + ".*" + why) as e:
        rewards.PairFeatures.compute(FakeFeat(), recs, n_prefix=1, cache_dir=tmp_path, progress=False)
    assert "weights_only" not in str(e.value) and "delete it" in str(e.value)


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("writer", ["atomic_path", "atomic_dir"])
def test_a_full_disk_names_the_file_and_the_free_space(tmp_path, writer):
    target = tmp_path / "rms" / ("index.csv" if writer == "atomic_path" else "bt-0")
    with pytest.raises(OSError) as e:
        with getattr(io, writer)(target) as tmp:
            (tmp if writer == "atomic_path" else tmp / "w.bin").write_bytes(b"x" * 3 * 2**20)
            _enospc()
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC and f"no space left on the device of {target}" in msg
    assert "MB free there; the write had put down 3 MB" in msg and "PRC_ROOT" in msg
    assert not target.exists() and [p.name for p in target.parent.iterdir()] == []  # nothing partial left


def test_a_full_disk_during_papermills_autosave_names_the_notebook(tmp_path, monkeypatch):
    import papermill

    from lib.core import pipeline

    monkeypatch.setattr(papermill, "execute_notebook", _enospc)
    with pytest.raises(OSError, match=rf"no space left on the device of {tmp_path}/06_figures_tables.ipynb"):
        pipeline.run("06_figures_tables", "smoke", out_dir=tmp_path)


def test_update_readme_writes_a_profiles_own_block_or_leaves_the_readme(tmp_path, monkeypatch):
    """`make refresh-results PROFILE=lamp-cpu` must not overwrite the smoke Results with lamp-cpu's; tldr-real has its own block."""
    mod = _update_readme_module()
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    for p in ("smoke", "tldr-real", "lamp-cpu"):
        (tmp_path / "figures" / p).mkdir(parents=True)
        (tmp_path / "figures" / p / "summary.md").write_text(f"# Results\n\n## Table\n\n{p} row\n\n## Files\n\nx\n")
    start, end = mod.markers("tldr-real")
    readme = f"intro\n{mod.START}\nold\n{mod.END}\nmid\n{start}\nold real\n{end}\ntail\n"
    (tmp_path / "README.md").write_text(readme)
    assert mod.main(["--profile", "lamp-cpu"]) == 0 and (tmp_path / "README.md").read_text() == readme
    assert mod.main(["--profile", "tldr-real"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "tldr-real row" in text and "old real" not in text and f"{mod.START}\nold\n{mod.END}" in text
