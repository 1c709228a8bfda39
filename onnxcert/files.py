"""File helpers shared by reports, figures, gate JUnit files, the journal and the exporters:
atomic writes (a temporary file beside the target, fsync, rename over it, so that a reader never
sees half a file and an interrupted write leaves the old file in place) and file hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | Path, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, fsync it, then rename it over
    ``path``. The temporary file is removed when ``write`` fails or is interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines as given)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return atomic_write(path, write)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_all(items: Sequence[tuple[str | Path, bytes]]) -> list[Path]:
    """Write every (path, data) atomically, all or none: each goes to a temporary file beside its
    path and is fsync'd, and only when every one is written are they renamed into place. A
    failure before that (a full disk) removes every temporary file and leaves the old files."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in items:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    return [path for _, path in staged]


def check_writable(path: str | Path, what: str) -> Path:
    """Before any work: can ``path`` be written? InputError (one line) when it is a directory,
    when a file stands where a folder of its path should be, or when its folder (or the nearest
    one that exists) does not let this process create a file there: a read-only file system, a
    folder without write permission. The folder is tested by creating and removing a file in it,
    which also holds for root, ACLs and read-only mounts."""
    from .errors import InputError
    from .untrusted import shown

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {shown(path)} is a directory; give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {what} {shown(path)}: {shown(folder)} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnxcert-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write {what} {shown(path)}: the folder {shown(folder)} does not accept new "
                         f"files ({exc.strerror or type(exc).__name__})") from None
    return path


def write_error(exc: OSError, path: str | Path, what: str, hint: str = ""):
    """The InputError for an OSError met while writing ``path`` (a full disk, a quota)."""
    from .errors import InputError
    from .untrusted import shown

    return InputError(f"cannot write {what} {shown(path)} ({exc.strerror or type(exc).__name__})"
                      + (f"; {hint}" if hint else ""))
