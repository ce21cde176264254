"""scripts/compare_figures.py: the byte-for-byte check of figure folders used to test refactors."""
import sys

from lib import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import compare_figures  # noqa: E402


def _folder(root, files: dict):
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_compare_sorts_files_into_identical_differ_missing_new_and_wall_clock(tmp_path):
    a = _folder(tmp_path / "a", {"t.csv": b"x,1\n", "f.png": b"\x89PNG1", "gone.md": b"|a|",
                                 "rm_train_time.csv": b"1.0"})
    b = _folder(tmp_path / "b", {"t.csv": b"x,1\n", "f.png": b"\x89PNG2", "extra.tex": b"\\x",
                                 "rm_train_time.csv": b"2.0"})
    res = compare_figures.compare(a, b)
    assert res == {"identical": ["t.csv"], "differ": ["f.png"], "missing": ["gone.md"], "new": ["extra.tex"],
                   "wall_clock": ["rm_train_time.csv"]}


def test_main_reports_and_strict_fails_only_on_real_differences(tmp_path, capsys):
    a = _folder(tmp_path / "a", {"t.csv": b"1", "rm_train_time.md": b"3 s"})
    b = _folder(tmp_path / "b", {"t.csv": b"1", "rm_train_time.md": b"4 s"})
    assert compare_figures.main([str(a), str(b), "--strict"]) == 0  # only a wall-clock table moved
    (b / "t.csv").write_bytes(b"2")
    assert compare_figures.main([str(a), str(b)]) == 0  # a report by default
    assert compare_figures.main([str(a), str(b), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "differ   t.csv" in out and "0 files byte-identical, 1 not (1 differ, 0 missing, 0 new)" in out
