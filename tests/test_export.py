"""Pref-LaMP as a Hugging Face dataset: a tiny synthetic build, exported and read back with load_from_disk."""

import json

import pytest
from datasets import load_from_disk

from lib.data import export, preflamp, synthetic


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    synthetic.write_synthetic_lamp(raw, tasks=("LaMP-4", "LaMP-5"), n_users=4, profile_size=4, queries_per_user=2,
                                   seed=3)
    out = tmp_path_factory.mktemp("pref") / "preflamp"
    manifest = preflamp.build(raw, out, corpus="synthetic", tasks=("LaMP-4", "LaMP-5"), rejected="other_rule",
                              seed=0)
    return out, manifest


def test_export_round_trips_counts_and_fields(build, tmp_path):
    src, manifest = build
    got = export.export_preflamp(src, tmp_path / "ds")
    pairs, queries = load_from_disk(str(tmp_path / "ds" / "pairs")), load_from_disk(str(tmp_path / "ds" / "queries"))
    n_pairs = sum(c["pairs"] for c in manifest["tasks"].values())
    n_train = sum(c["train_pairs"] for c in manifest["tasks"].values())
    assert (pairs["train"].num_rows, pairs["test"].num_rows) == (n_train, n_pairs - n_train) and n_train > 0
    assert queries["test"].num_rows == sum(c["queries"] for c in manifest["tasks"].values()) > 0
    assert got == {"pairs": {"train": n_train, "test": n_pairs - n_train}, "queries": {"test": queries["test"].num_rows}}
    assert set(pairs["train"].column_names) == set(export.PAIR_FIELDS)
    assert set(pairs["test"]["split"]) == {"test"}
    want = {p["pair_id"]: p for p in preflamp.load_pairs(src)}
    row = pairs["train"][0]
    assert row == {k: want[row["pair_id"]][k] for k in export.PAIR_FIELDS}
    q = queries["test"][0]
    assert set(q["profile"][0]) == {"id", "source", "output"} and q["rule"]  # synthetic users carry a rule
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text()) == manifest
    card = (tmp_path / "ds" / "README.md").read_text()
    assert f"| pairs | train | {n_train} |" in card and "pairs_dropped_identical" in card
    assert "no LaMP text" in card and "CC BY-NC-SA" not in card


def test_real_lamp_card_carries_lamps_license(build):
    src, manifest = build
    pairs, queries = export._datasets(preflamp.load_pairs(src), preflamp.load_queries(src))
    assert "CC BY-NC-SA 4.0" in export.data_card({**manifest, "corpus": "lamp"}, pairs, queries)


def test_an_edited_or_missing_file_is_an_error_and_nothing_is_written(build, tmp_path):
    import shutil

    src = tmp_path / "pl"
    shutil.copytree(build[0], src)
    f = src / "LaMP-4" / "pairs.jsonl"
    f.write_text(f.read_text() + f.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"LaMP-4/pairs.jsonl: sha256 differs"):
        export.export_preflamp(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    (src / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        export.export_preflamp(src, tmp_path / "out")


def test_a_record_without_a_field_names_file_and_record(build, tmp_path):
    import shutil

    from lib.core.io import sha256_file, write_json

    src = tmp_path / "pl"
    shutil.copytree(build[0], src)
    f = src / "LaMP-5" / "queries.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    del rows[1]["reference"]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = json.loads((src / "manifest.json").read_text())
    m["files"]["LaMP-5/queries.jsonl"] = sha256_file(f)
    write_json(src / "manifest.json", m)
    with pytest.raises(KeyError, match=r"LaMP-5/queries.jsonl: record 2 .* has no field\(s\) \['reference'\]"):
        export.export_preflamp(src, tmp_path / "out")


def test_cli_exports_a_folder(build, tmp_path, capsys):
    assert export.main(["--preflamp", str(build[0]), "--out", str(tmp_path / "cli")]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"]["train"] > 0
    assert (tmp_path / "cli" / "pairs" / "dataset_dict.json").exists()
