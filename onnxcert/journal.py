"""The run journal: every finished input, streamed as JSONL beside the report, so that a long run
survives an interruption and ``--resume`` continues it.

Where: beside the first output, with its suffix replaced: ``report.json`` -> ``report.jsonl``.

What: one JSON object per line. The first line is the header::

    {"journal": "onnxcert.journal/1", "onnxcert_version", "created",
     "identity": {"model": {sha256, input, output}, "runtime": {provider}, "settings": {...},
                  "preprocess": {...}, "classes", "output_kind", "strict_inputs",
                  "inputs": {source, count, digest}}}

``identity`` is everything that decides the records: the model's bytes, the execution provider,
every smoothing and certification setting (batch size included: onnxruntime's last bits may
depend on it), the preprocessing, and the inputs (their count, and a digest of their names,
labels and array shape; not their pixels). Then one line per event, in the order they happened::

    {"output_kind": "logits"}                        once, when the first batch decides it
    {"record": {...as in the report...}, "votes": k, "n": n}   a certified input (k of n votes)
    {"skipped": {"index", "input", "reason"}}         an input of a folder that could not be decoded

The file is created when the first input is done, so a run that fails before that leaves none.
Each line is flushed as soon as it is written, so a killed process loses at most the input it
was working on; the file is fsync'd at most every FSYNC_SECONDS and when it is closed, so a
power cut loses at most that much. A last line without its newline (torn by a crash) is dropped
on resume, and so is a torn header (a crash while the first line was written: the journal then
holds no input, and the run starts from the first one). Because each input's noise depends only on (seed, index), the inputs still to do give
the same records in a resumed run as in an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, InputError, OnnxCertError
from .untrusted import check_tree, shown
from .inputs import SkippedInput
from .report import Record
from .stats.certify import ConfidenceCertificate, InputCertificate
from .stats.label import LabelCertificate

FORMAT = "onnxcert.journal/1"
SUFFIX = ".jsonl"
FSYNC_SECONDS = 1.0
START_OVER = "drop --resume and pass --force to start over"


def journal_path(output: str | Path) -> Path:
    """The journal of a run whose (first) report is ``output``: report.json -> report.jsonl."""
    return Path(output).with_suffix(SUFFIX)


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, allow_nan=False))


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class JournalState:
    """What a journal holds: its header, the finished records and skips by index, the output
    kind decided so far, and the byte length of its whole lines (where appending resumes)."""

    path: Path
    header: Mapping[str, Any]
    records: Mapping[int, Record] = field(default_factory=dict)
    skipped: Mapping[int, SkippedInput] = field(default_factory=dict)
    output_kind: str | None = None
    size: int = 0

    @property
    def done(self) -> int:
        return len(self.records) + len(self.skipped)


class TornHeader(InputError):
    """The journal holds only a prefix of its header line: a crash as the run wrote it."""


HEADER_START = b'{"journal": "' + FORMAT.encode() + b'"'


def read_journal(path: str | Path) -> JournalState:
    """Parse a journal; InputError (one line, with the line number) when it is not one, and
    TornHeader when it holds nothing but the beginning of a header (nothing to resume)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the journal {shown(path)} ({type(exc).__name__})") from None
    whole = data[:data.rfind(b"\n") + 1]  # a torn last line is dropped
    lines = whole.split(b"\n")[:-1]
    if not lines and data and (HEADER_START.startswith(data) or data.startswith(HEADER_START)):
        raise TornHeader(f"{shown(path)} holds only a torn header (the run that wrote it was killed "
                         "before its first input was done)")
    if not lines:
        raise InputError(f"{shown(path)} is not an onnxcert journal (empty); {START_OVER}")
    header = _line(path, 1, lines[0])
    if not isinstance(header, dict) or header.get("journal") != FORMAT or not isinstance(header.get("identity"), dict):
        raise InputError(f"{str(path)!r} is not an onnxcert journal ({FORMAT}); {START_OVER}")
    records: dict[int, Record] = {}
    skipped: dict[int, SkippedInput] = {}
    kind = None
    for number, raw in enumerate(lines[1:], 2):
        event = _line(path, number, raw)
        try:
            if "record" in event:
                rec = record_from_dict(event["record"], event["votes"], event["n"])
                records[rec.index] = rec
            elif "skipped" in event:
                s = event["skipped"]
                skipped[int(s["index"])] = SkippedInput(int(s["index"]), s["input"], str(s["reason"]))
            elif "output_kind" in event:
                kind = str(event["output_kind"])
            else:
                raise KeyError(next(iter(event), "nothing"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{str(path)!r} line {number} is not a journal entry; {START_OVER}") from None
    return JournalState(path, header, records, skipped, kind, len(whole))


def _line(path: Path, number: int, raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deeply, a 5000-digit int
        raise InputError(f"{shown(path)} line {number} is not JSON; {START_OVER}") from None
    if not isinstance(value, dict):
        raise InputError(f"{shown(path)} line {number} is not a journal entry; {START_OVER}")
    check_tree(value, f"{shown(path)} line {number}", max_nodes=None)
    return value


def record_from_dict(d: Mapping[str, Any], votes: int, n: int) -> Record:
    """The Record whose ``to_dict()`` is ``d``; the dict leaves out the label certificate's
    ``votes`` of ``n``."""
    label = d["label_certificate"]
    confidence: dict[str, dict[str, ConfidenceCertificate]] = {}
    for measure, entry in d["confidence"].items():
        confidence[measure] = {
            method: ConfidenceCertificate(measure, method, float(entry["mean"]), tuple(c["lower_bounds"]),
                                          tuple(c["upper_bounds"]), tuple(_radius(r) for r in c["radius"]))
            for method, c in entry.items() if method != "mean"}
    cert = InputCertificate(int(d["prediction"]), LabelCertificate(int(votes), int(n), label["p_lower"], label["radius"]),
                            confidence)
    clean = d.get("clean_prediction")
    sequential = {k: d[k] for k in ("samples", "stopped_at_look", "decisions")} if "samples" in d else None
    return Record(int(d["index"]), d["input"], d["label"], cert, None if clean is None else int(clean), sequential)


def _radius(r) -> float | None:
    if r is None:
        return None
    return math.inf if r == "inf" else float(r)


def check_identity(state: JournalState, identity: Mapping[str, Any]) -> None:
    """ConfigError naming the first thing that differs between the journal's run and this one."""
    theirs = _flatten(state.header["identity"])
    ours = _flatten(plain(identity))
    for key in [*ours, *(k for k in theirs if k not in ours)]:
        if theirs.get(key, "(not set)") != ours.get(key, "(not set)"):
            raise ConfigError(f"cannot resume from {str(state.path)!r}: {key} differs (journal "
                              f"{_short(theirs.get(key, '(not set)'))}, this run {_short(ours.get(key, '(not set)'))}); "
                              f"rerun with the journal's model, inputs and settings, or {START_OVER}")


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- writing


class JournalWriter:
    """Appends events to a journal; use as a context manager (fsync and close on exit).

    The file is opened at the first event, so that a run that fails before finishing any input
    leaves no journal behind (nor touches an earlier one).
    """

    def __init__(self, path: str | Path, *, identity: Mapping[str, Any] | None = None,
                 resume: JournalState | None = None):
        """Start a new journal with ``identity`` (replacing any file there), or continue
        ``resume`` after its last whole line."""
        self.path = Path(path)
        self._identity = plain(identity or {})
        self._resume = resume
        self._fh = None
        self._synced = time.monotonic()
        self.output_kind = resume.output_kind if resume is not None else None
        self.written = 0  # records and skips written by this writer

    def _open(self) -> None:
        """Reopen the journal being resumed (never through a symbolic link), or write a new one's
        header to a temporary file and rename it over ``path``: a journal that is a symbolic
        link is replaced by a file, its target left as it was."""
        from . import __version__

        if self._resume is not None:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
            self._fh = os.fdopen(fd, "r+b")
            self._fh.truncate(self._resume.size)
            self._fh.seek(self._resume.size)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            self._fh = os.fdopen(fd, "wb")
            self._emit({"journal": FORMAT, "onnxcert_version": __version__,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "identity": self._identity})
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
        except BaseException:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def record(self, record: Record, output_kind: str) -> None:
        if output_kind != self.output_kind:
            self._write({"output_kind": output_kind})
            self.output_kind = output_kind
        label = record.certificate.label
        self._write({"record": record.to_dict(), "votes": label.votes, "n": label.n})

    def skipped(self, skip: SkippedInput) -> None:
        self._write({"skipped": skip.to_dict()})

    def _write(self, event: Mapping[str, Any]) -> None:
        try:
            if self._fh is None:
                self._open()
            self._emit(event)
            if time.monotonic() - self._synced >= FSYNC_SECONDS:
                self._sync()
        except OSError as exc:  # a full disk, a quota, a read-only remount
            raise self._failed(exc) from None
        if "record" in event or "skipped" in event:
            self.written += 1

    def _emit(self, event: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(event, allow_nan=False).encode("utf-8") + b"\n")
        self._fh.flush()

    def _failed(self, exc: OSError) -> InputError:
        kept = self.written + (self._resume.done if self._resume is not None else 0)
        if self._fh is None or kept == 0:
            return InputError(f"cannot write the journal {shown(self.path)} ({exc.strerror or type(exc).__name__}); "
                              "no input was kept" + ("" if self._resume is None else ", the journal is as it was"))
        return InputError(f"cannot write the journal {shown(self.path)} ({exc.strerror or type(exc).__name__}); "
                          f"the {kept} input(s) before it are kept there: make room and run the same command "
                          "with --resume")

    def _sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        """fsync and close; an OSError there (a full disk) is an InputError like a failed write."""
        if self._fh is not None and not self._fh.closed:
            try:
                self._sync()
                self._fh.close()
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self._fh.close()
                raise self._failed(exc) from None

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(OnnxCertError):  # the error in flight is the one to report
            self.close()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- one run per journal


def lock_path(journal: str | Path) -> Path:
    """The lock file of a journal: ``out/r.jsonl`` -> ``out/.r.jsonl.lock``."""
    journal = Path(journal)
    return journal.with_name(f".{journal.name}.lock")


class JournalLock:
    """An exclusive lock (``flock``) on a journal, held from before any work until the reports
    are written, so that a second run with the same ``-o`` refuses at once (one line, exit 2)
    instead of interleaving its journal with the first run's and replacing its report.

    The lock is a hidden file beside the journal holding the owner's pid; it is removed on
    release. A file removed by its owner while another process waited to lock it is detected
    (inode check) and the lock is taken again on the new file. Where ``flock`` is not available
    (Windows, some network file systems) runs are not locked, with a warning.
    """

    def __init__(self, journal: str | Path):
        self.journal = Path(journal)
        self.path = lock_path(journal)
        self._fd: int | None = None

    def __enter__(self) -> "JournalLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover  (Windows)
            return
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, a read-only parent
            raise InputError(f"cannot create the folder {shown(folder)} for the run's journal and report "
                             f"({exc.strerror or type(exc).__name__})") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise InputError(f"cannot write beside the journal {shown(self.journal)}: {shown(self.path)} "
                                 f"cannot be created ({exc.strerror or type(exc).__name__})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise InputError(f"another onnxcert run{who} is writing {shown(self.journal)}; wait for it to "
                                 "finish, or give this run another -o") from None
            except OSError as exc:  # no locking on this file system
                os.close(fd)
                import logging

                logging.getLogger("onnxcert").warning("cannot lock %s (%s): concurrent runs with the same -o "
                                                      "are not detected", self.path, exc.strerror)
                return
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its owner removed it between our open and our lock: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            self._fd = fd
            return

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked: a waiting process sees the inode change
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
