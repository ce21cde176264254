"""LaMP loader and downloader on small files the tests write themselves."""
import http.server
import json
import threading

import pytest

from lib.core.io import BadFileError
from lib.data import lamp
from lib.data.lamp import LaMPFormatError


def questions(n=2):
    return [{"id": f"q{i}", "input": lamp.TASKS["LaMP-4"].instruction + f"article {i}",
             "profile": [{"id": f"p{i}{j}", "text": f"text {j}", "title": f"title {j}"} for j in range(3)]}
            for i in range(n)]


def outputs(ids=("q0", "q1")):
    return {"task": "LaMP_4", "golds": [{"id": i, "output": f"headline {i}"} for i in ids]}


def write_task(root, qs, outs, raw_q=None, raw_o=None):
    qf = lamp.file_path(root, "LaMP-4", "train", "questions")
    of = lamp.file_path(root, "LaMP-4", "train", "outputs")
    qf.parent.mkdir(parents=True, exist_ok=True)
    qf.write_text(raw_q if raw_q is not None else json.dumps(qs))
    of.write_text(raw_o if raw_o is not None else json.dumps(outs))
    return qf, of


def test_load_good_files(tmp_path):
    write_task(tmp_path, questions(), outputs())
    qs = lamp.load_task(tmp_path, "LaMP-4", "train")
    assert [q["id"] for q in qs] == ["q0", "q1"]
    assert qs[1]["output"] == "headline q1" and len(qs[0]["profile"]) == 3


@pytest.mark.parametrize("case, match", [
    ("html", "HTML page"),
    ("truncated", "truncated JSON"),
    ("missing_field", "field 'title'"),
    ("wrong_type", "field 'input'"),
    ("mismatched", "ids do not match"),
    ("duplicate", "duplicate question id"),
    ("wrong_task", "field 'task'"),
])
def test_bad_files_raise_clear_errors(tmp_path, case, match):
    qs, outs, raw_q, raw_o = questions(), outputs(), None, None
    if case == "html":
        raw_q = "<!DOCTYPE html><html><body>Not found</body></html>"
    elif case == "truncated":
        raw_q = json.dumps(qs)[:-40]
    elif case == "missing_field":
        del qs[1]["profile"][2]["title"]
    elif case == "wrong_type":
        qs[0]["input"] = 42
    elif case == "mismatched":
        outs = outputs(("q0", "q9"))
    elif case == "duplicate":
        qs[1]["id"] = "q0"
    elif case == "wrong_task":
        outs["task"] = "LaMP_5"
    qf, of = write_task(tmp_path, qs, outs, raw_q, raw_o)
    with pytest.raises(BadFileError if case == "html" else LaMPFormatError, match=match) as e:
        lamp.load_task(tmp_path, "LaMP-4", "train")
    assert "train_questions.json" in str(e.value) or "train_outputs.json" in str(e.value)
    if case == "missing_field":
        assert "profile[2]" in str(e.value) and "id q1" in str(e.value)


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        lamp.load_task(tmp_path, "LaMP-4", "dev")


class _Server:
    """A loopback HTTP server serving a dict path -> (status, body), counting requests."""

    def __init__(self, routes):
        self.routes, self.hits = routes, {}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                status, body = outer.routes.get(self.path, (404, b"nope"))
                if callable(body):
                    status, body = body(outer.hits[self.path])
                self.send_response(status)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/LaMP"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    servers = []

    def make(routes):
        servers.append(_Server(routes))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_download_validates_and_records_manifest(tmp_path, server):
    q = json.dumps(questions()).encode()
    flaky = lambda n: (503, b"busy") if n == 1 else (200, q)  # noqa: E731 - first try fails, the retry succeeds
    srv = server({"/LaMP/LaMP_4/train/train_questions.json": (200, flaky),
                  "/LaMP/LaMP_4/train/train_outputs.json": (200, json.dumps(outputs()).encode())})
    m = lamp.download(tmp_path, tasks=["LaMP-4"], splits=["train"], base_url=srv.url, backoff=0.01)
    key = "LaMP_4/train/train_questions.json"
    assert m[key]["bytes"] == len(q) and len(m[key]["sha256"]) == 64
    assert srv.hits["/LaMP/LaMP_4/train/train_questions.json"] == 2
    assert json.loads((tmp_path / "manifest.json").read_text()) == m
    assert lamp.load_task(tmp_path, "LaMP-4", "train")[0]["output"] == "headline q0"
    # a second call finds the files and downloads nothing
    lamp.download(tmp_path, tasks=["LaMP-4"], splits=["train"], base_url=srv.url)
    assert srv.hits["/LaMP/LaMP_4/train/train_outputs.json"] == 1


@pytest.mark.parametrize("bad", ["html", "mismatched"])
def test_download_of_bad_content_leaves_nothing(tmp_path, server, bad):
    q = json.dumps(questions()).encode()
    o = json.dumps(outputs(("q0", "q7"))).encode() if bad == "mismatched" else json.dumps(outputs()).encode()
    if bad == "html":
        q = b"<html><head><title>LaMP</title></head><body>" + b"x" * 16000 + b"</body></html>"
    srv = server({"/LaMP/LaMP_4/train/train_questions.json": (200, q),
                  "/LaMP/LaMP_4/train/train_outputs.json": (200, o)})
    out = tmp_path / "lamp"
    with pytest.raises(BadFileError if bad == "html" else LaMPFormatError,
                       match="HTML" if bad == "html" else "ids do not match") as e:
        lamp.download(out, tasks=["LaMP-4"], splits=["train"], base_url=srv.url, backoff=0.01)
    assert srv.url in str(e.value)  # the error names the file (its URL)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_download_gives_up_with_a_clear_error(tmp_path, server):
    srv = server({})
    with pytest.raises(ConnectionError, match="local folder"):
        lamp.download(tmp_path, tasks=["LaMP-4"], splits=["train"], base_url=srv.url, retries=2, backoff=0.01)
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_files_are_rejected_clearly(tmp_path, encoding):
    raw = json.dumps(questions(), ensure_ascii=False).encode(encoding)
    assert json.loads(raw)  # json.loads alone would accept it silently
    qf, _ = write_task(tmp_path, questions(), outputs())
    qf.write_bytes(raw)
    with pytest.raises(BadFileError, match="(byte-order mark|NUL bytes).*must be UTF-8.*iconv -f UTF-(16|32)") as e:
        lamp.load_task(tmp_path, "LaMP-4", "train")
    assert str(qf) in str(e.value)


def test_utf8_bom_is_accepted_and_bad_utf8_named(tmp_path):
    qs = questions()
    qs[0]["profile"][0]["title"] = "Café 🚀 naïve"
    qf, _ = write_task(tmp_path, qs, outputs())
    qf.write_bytes(b"\xef\xbb\xbf" + json.dumps(qs, ensure_ascii=False).encode("utf-8"))
    assert lamp.load_task(tmp_path, "LaMP-4", "train")[0]["profile"][0]["title"] == "Café 🚀 naïve"
    qf.write_bytes(json.dumps(qs, ensure_ascii=False).encode("latin-1", errors="replace"))
    with pytest.raises(BadFileError, match="line 1: byte 0x.. is not valid UTF-8") as e:
        lamp.load_task(tmp_path, "LaMP-4", "train")
    assert str(qf) in str(e.value)
