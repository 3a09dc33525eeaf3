"""Files written whole or not at all, and strict JSON.

- write_json: standard JSON only (no NaN / Infinity, which most parsers refuse): a non-finite float
  becomes null. Written by write-then-rename, like every whole file here.
- write_text: a file replaced atomically (a reader or a crash sees the old file or the new one).
- replace_dir: a directory built under a temporary name, then swapped in for the old one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def finite_or_none(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, +-inf; numpy's too) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if type(obj).__module__ == "numpy":
        item = getattr(obj, "item", None)
        if callable(item) and getattr(obj, "ndim", 1) == 0:
            return finite_or_none(item())
        tolist = getattr(obj, "tolist", None)
        if callable(tolist):
            return finite_or_none(tolist())
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON text: non-finite floats as null, anything else unknown as str (paths, dates)."""
    return json.dumps(finite_or_none(obj), allow_nan=False, default=_default, **kw)


def _default(o: Any) -> Any:
    converted = finite_or_none(o)
    return str(o) if converted is o else converted


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_json(path: Path, obj: Any, indent: int = 1) -> Path:
    return write_text(path, dumps(obj, indent=indent) + "\n")


def new_temp_dir(final: Path) -> Path:
    """An empty directory beside `final` (same filesystem, so the swap is a rename)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` at `final`, replacing what was there. The old directory is first
    renamed aside, so at every moment `final` is the old report or the new one, never a half of either."""
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.is_symlink() or final.exists():
        if not final.is_dir() or final.is_symlink():
            raise NotADirectoryError(20, "exists and is not a directory", str(final))
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class building_dir:
    """`with building_dir(final) as tmp:` fill tmp; on success it replaces `final` whole, on any failure
    it is removed and `final` is left as it was (a report is never half-written)."""

    def __init__(self, final: Path):
        self.final = Path(final)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.tmp = new_temp_dir(self.final)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                replace_dir(self.tmp, self.final)
                return False
            except BaseException:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False
