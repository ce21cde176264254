"""Atomic file writes, hashing and seeding shared by every stage.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted or
failing run never leaves a partial file behind.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0


def disk_full_error(path, e: OSError, written: int | None = None) -> OSError:
    """The error of a write to ``path`` that ran out of disk (or quota): which file, how much is free on its
    device, how much the write had put down, and where to go instead (``PRC_ROOT`` moves data/ and build/,
    ``PRC_CACHE`` the model folders)."""
    d = Path(path).parent
    while not d.exists() and d != d.parent:
        d = d.parent
    mb = lambda n: f"{n / 2**20:,.0f} MB"  # noqa: E731
    done = f"; the write had put down {mb(written)} when it failed" if written else ""
    return OSError(e.errno, f"no space left on the device of {path} while writing it ({mb(shutil.disk_usage(d).free)} "
                   f"free there{done}): free space, or put data/ and build/ on a larger disk with PRC_ROOT=<dir> "
                   f"(PRC_CACHE=<dir> for the model folders) and run again ({e.strerror or e})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise disk_full_error(path, e, _size(tmp)) from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


_OLD_SUFFIX = ".old"


def _remove(p: Path) -> None:
    """Delete a file, link or folder tree; errors ignored (what is left is a stale sibling)."""
    if p.is_symlink() or p.is_file():
        with contextlib.suppress(OSError):
            p.unlink()
    else:
        shutil.rmtree(p, ignore_errors=True)


def _clean_stale_old(path: Path) -> None:
    """Remove ``.<name>.<hex>.old`` siblings an interrupted :func:`atomic_dir` left behind, but only
    while ``path`` exists: otherwise such a folder may hold the only copy of the old content."""
    if not path.exists():
        return
    pat = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{32}}{re.escape(_OLD_SUFFIX)}")
    for p in path.parent.iterdir():
        if pat.fullmatch(p.name):
            _remove(p)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; it replaces ``path`` only if the block succeeds.

    The block writes into a fresh temporary sibling (``.<name>.<random>.tmp``). On success the old
    ``path`` (if any) is first renamed aside to a unique sibling ``.<name>.<hex>.old``, the new folder
    renamed in, and only then the old one deleted; if renaming the new one in fails, the old one is put
    back. So at every moment the old content exists in full under ``path`` or its ``.old`` sibling, and a
    failing block leaves ``path`` untouched and no temporary folder behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_old(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno in _DISK_FULL:
                raise disk_full_error(path, e, _size(tmp)) from e
            raise
        old = None
        if path.exists() or path.is_symlink():
            old = path.parent / f".{path.name}.{uuid.uuid4().hex}{_OLD_SUFFIX}"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                try:
                    os.replace(old, path)
                except OSError as e:
                    raise OSError(f"atomic_dir: could not move the new {path} in nor the old one back: the old "
                                  f"content is in {old} ({e})") from None
            raise
        if old is not None:
            _remove(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path, obj, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path, records: Iterable[dict]) -> Path:
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    return write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def write_parquet(df, path) -> Path:
    """A DataFrame as Parquet (pyarrow), written atomically: compact for long per-pair tables."""
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


class BadFileError(ValueError):
    """An input file is not what it should be; the message names the file (and line, record or field)."""


_BOMS = [(b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
         (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE")]


# magic bytes of compressed files that users save under a .json / .jsonl name (a .json.gz renamed, say)
_COMPRESSED = [(b"\x1f\x8b", "gzip", "gunzip -c '{p}' > '{out}'"), (b"PK\x03\x04", "zip", "unzip -p '{p}' > '{out}'"),
               (b"BZh", "bzip2", "bunzip2 -c '{p}' > '{out}'"), (b"\xfd7zXZ\x00", "xz", "unxz -c '{p}' > '{out}'"),
               (b"\x28\xb5\x2f\xfd", "zstd", "zstd -dc '{p}' > '{out}'")]


def loads(path, text: str, where: str = ""):
    """``json.loads(text)`` of (a line of) ``path``; a document nested too deeply for the parser is a
    :class:`BadFileError` naming the file (and ``where``), not a bare RecursionError. JSON syntax errors
    propagate as :class:`json.JSONDecodeError` for the caller to word."""
    try:
        return json.loads(text)
    except RecursionError:
        raise BadFileError(f"{path}{': ' + where if where else ''}: JSON nested too deeply to read "
                           f"(over {sys.getrecursionlimit()} levels); no record of this project nests like that: "
                           "is it the right file?") from None


def _not_utf8(path, found: str, enc: str) -> BadFileError:
    return BadFileError(f"{path}: {found}: the file must be UTF-8; convert it with "
                        f"`iconv -f {enc} -t UTF-8 '{path}' > '{Path(path).stem}.utf8{Path(path).suffix}'` "
                        "(or re-save it as UTF-8)")


def _guess_wide(head: bytes) -> str:
    """UTF-16 / UTF-32 and byte order of BOM-less text, from where its (mostly ASCII) NUL bytes sit."""
    z = [head[k::4].count(0) / max(len(head[k::4]), 1) for k in range(4)]
    if min(z[1:]) > 0.5 and z[0] < 0.5:
        return "UTF-32-LE"
    if min(z[:3]) > 0.5 and z[3] < 0.5:
        return "UTF-32-BE"
    odd, even = (z[1] + z[3]) / 2, (z[0] + z[2]) / 2
    return "UTF-16-LE" if odd > even else "UTF-16-BE"


def decode_text(path, raw: bytes, what: str = "JSON") -> str:
    """``raw`` (the bytes of ``path``) as UTF-8 text (a UTF-8 byte-order mark is dropped), or
    :class:`BadFileError` naming the file: a UTF-16 / UTF-32 file (byte-order mark or NUL bytes), bytes that
    are not UTF-8 (with the line), or an HTML page (first non-space character ``<``: e.g. an error or login
    page saved in place of a download), or compressed data (gzip, zip, bzip2, xz, zstd: decompress it first).
    The project's one "must be UTF-8" check (LaMP, JSON lines, JSON)."""
    for magic, kind, cmd in _COMPRESSED:
        if raw.startswith(magic):
            raise BadFileError(f"{path}: {kind}-compressed data where {what} text was expected: decompress it first "
                               f"(`{cmd.format(p=path, out=Path(path).with_suffix('.decompressed' + Path(path).suffix))}`) and point the loader at the result")
    for bom, enc in _BOMS:
        if raw.startswith(bom):  # iconv reads the byte order from the mark (and drops it) given just UTF-16/32
            raise _not_utf8(path, f"{enc} byte-order mark", enc[:6])
    if b"\x00" in raw:
        enc = _guess_wide(raw[:4096])
        raise _not_utf8(path, f"NUL bytes ({enc} text?)", enc)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise _not_utf8(path, f"line {line}: byte 0x{raw[e.start]:02x} is not valid UTF-8 (another encoding?)",
                        "<its encoding, e.g. LATIN1>") from None
    if text.lstrip()[:1] == "<":
        raise BadFileError(f"{path}: got an HTML page where {what} was expected (an error or login page saved "
                           "in place of the file? download it again)")
    return text


def _truncated(line: str, e: json.JSONDecodeError) -> bool:
    """Whether the JSON error is the text running out: the document ends inside a value."""
    return e.pos >= len(line.rstrip()) or e.msg.startswith("Unterminated string")


def parse_jsonl(path, text: str) -> list[dict]:
    """The records of JSON-lines ``text`` (read from ``path``); errors name the file and line."""
    out = []
    lines = list(io.StringIO(text, newline=None))  # universal newlines, as open() reads them
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = loads(path, line.rstrip("\n"), f"line {i}")
        except json.JSONDecodeError as e:
            if i == last and _truncated(line, e):
                raise BadFileError(f"{path}: line {i}: the file ends inside a record (truncated? {e.msg}); "
                                   "an interrupted download or write: fetch or regenerate the file") from None
            raise BadFileError(f"{path}: line {i}: invalid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(rec, dict):
            raise BadFileError(f"{path}: line {i}: expected a JSON object (a record), got a {type(rec).__name__}")
        out.append(rec)
    return out


def read_jsonl(path) -> list[dict]:
    """Records of a JSON-lines file (an empty file: ``[]``). Errors (:class:`BadFileError`, a
    ``ValueError``) name the file and line: invalid JSON, a non-object line, a truncated last line, an
    HTML page, a file that is not UTF-8."""
    path = Path(path)
    return parse_jsonl(path, decode_text(path, path.read_bytes()))


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def check_json(path, raw: bytes | None = None):
    """Parse a JSON document or, failing that, JSON lines (as ``datasets``' json reader accepts both);
    returns the parsed value. :class:`BadFileError` names the file and the line / column of the error,
    an empty file, a truncated file, an HTML page, a file that is not UTF-8."""
    path = Path(path)
    raw = path.read_bytes() if raw is None else raw
    if not raw.strip():
        raise BadFileError(f"{path}: empty file (expected JSON records)")
    text = decode_text(path, raw)
    try:
        return loads(path, text)
    except json.JSONDecodeError as e:
        doc_err = e
    lines = [line for line in io.StringIO(text, newline=None) if line.strip()]
    if len(lines) > 1 and _is_object(lines[0]):  # JSON lines (the hub's .json files often are)
        return parse_jsonl(path, text)  # raises naming the bad line
    e = doc_err
    if _truncated(text, e):
        raise BadFileError(f"{path}: line {e.lineno}, column {e.colno}: the file ends inside a record (truncated? "
                           f"{e.msg}); an interrupted download or write: fetch or regenerate the file") from None
    raise BadFileError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON ({e.msg})") from None


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a hard dependency in practice
        pass
