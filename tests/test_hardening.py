"""Hardening (issue 15): resource limits, bombs in structured input, file-system faults,
concurrent runs, Ray connections, CLI basics, and reports that contradict themselves.

``CASES`` is the table of hostile command lines: each must end with its documented exit code
(docs/errors.md), exactly one ``onnxcert: error:`` line that names the problem and quotes at most
a few hundred characters of the input, no traceback, and no report written. The tests below the
table inject faults a command line cannot: a full disk (a small tmpfs in a private mount
namespace, where the machine allows one; an injected ENOSPC otherwise), a lock held by another
process, symbolic links, FIFOs, unreadable folders, signals while connecting to Ray.

Tests may run as root, for whom chmod does not stop reads or writes: those cases use a
read-only mount (a private mount namespace), or simulate the error, and say so.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import onnx_models as om
from cli_helpers import cli, error_line
import onnxcert
import onnxcert.cli  # noqa: F401  (registers every command)
from onnxcert import files as files_mod
from onnxcert import journal as journal_mod
from onnxcert.journal import read_journal

SHAPE = (3, 4, 4)
FAST = ("--sigma", "0.25", "--n0", "10", "--n", "50", "--methods", "naive,cdf-dkw")
MAX_LINE = 500  # an error line, temporary paths included (the longest expected are ~400)
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# ---------------------------------------------------------------- builders


def good_png(path: Path, size=(4, 4), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(path)
    return path


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels and holds none: Pillow reads the size only."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def npz_with_header(path: Path, shape, nbytes_of_data: int = 64) -> Path:
    """A .npz whose 'x' header claims ``shape`` (float32) but holds only a few bytes."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
    buf.write(b"\0" * nbytes_of_data)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue())
    return path


def npy_with_header(path: Path, shape) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
        fh.write(b"\0" * 64)
    return path


def dynamic_model(d: Path) -> Path:
    """Three classes from the channel means; height and width are dynamic."""
    return om.channel_means(d / "dyn.onnx", size=("H", "W"))


def fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


ALIAS_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]"]
                       + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
                          for i in range(8)]) + "\nsmoothing: {sigma: *i}\n"


def report(d: Path, records=None, **settings) -> Path:
    """A small valid report (two labelled records, one correct), optionally changed."""
    def rec(i, label, prediction):
        return {"index": i, "input": None, "label": label, "prediction": prediction,
                "correct": None if label is None else label == prediction,
                "label_certificate": {"p_lower": 0.9, "radius": 0.3},
                "confidence": {"score": {"mean": 0.8, "naive": {"lower_bounds": [0.7], "upper_bounds": [0.9],
                                                                "radius": [0.2]}}}}
    data = {"schema": "onnxcert.report/1", "complete": True, "count": 2, "total": 2, "model": None,
            "settings": {"sigma": 0.25, "alpha": 0.001, "n0": 100, "n": 1000, "measures": ["score"],
                         "methods": ["naive"], "thresholds": {"score": [0.5]}, "radii": [0.0], **settings},
            "records": records if records is not None else [rec(0, 0, 0), rec(1, 1, 0)]}
    path = d / "rep.json"
    path.write_text(json.dumps(data))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _deep_report(d: Path) -> Path:
    path = report(d)
    data = path.read_text()
    path.write_text(data.replace('"sigma": 0.25', '"sigma": ' + "[" * 100_000 + "]" * 100_000))
    return path


def _long_int_report(d: Path) -> Path:
    path = report(d)
    path.write_text(path.read_text().replace('"sigma": 0.25', '"sigma": 1' + "0" * 5000))
    return path


def _edited_correct(d: Path, label, prediction, correct) -> Path:
    path = report(d)
    data = json.loads(path.read_text())
    data["records"][0].update(label=label, prediction=prediction, correct=correct)
    path.write_text(json.dumps(data))
    return path


def _metadata_model(d: Path, value: str) -> Path:
    return om.constant(d / "meta.onnx", [0.7, 0.2, 0.1], shape=SHAPE, metadata={"onnxcert.smoothing": value})


def _folder(d: Path, *extra) -> Path:
    good_png(d / "imgs" / "0" / "a.png")
    good_png(d / "imgs" / "1" / "b.png", color=(30, 200, 30))
    for make in extra:
        make(d / "imgs")
    return d / "imgs"


def _scores_npz(d: Path) -> Path:
    np.savez_compressed(d / "s.npz", estimation=np.zeros((4, 20_000, 10), np.float32),
                        selection=np.zeros((4, 10, 10), np.float32))
    return d / "s.npz"


# ---------------------------------------------------------------- the table

# (id, builder (tmp_path, model, npy) -> (argv, env), exit code, pattern of the error line)

def _run(*args, env=None):
    return lambda d, m, x: ([*(a(d, m, x) if callable(a) else a for a in args)], env or {})


def _with(build, env=None):
    return lambda d, m, x: (build(d, m, x), env or {})


M = lambda d, m, x: m  # noqa: E731
X = lambda d, m, x: x  # noqa: E731
OUT = lambda d, m, x: d / "r.json"  # noqa: E731

CASES = [
    # 1. resources, checked before any work
    ("n-1e12", _run("run", M, X, *FAST, "--n", "1000000000000", "-o", OUT), 2,
     r"n = 1,000,000,000,000 estimation samples per input needs about .* of memory, more than .*; lower smoothing.n"),
    ("threads-10000", _run("run", M, X, *FAST, "--threads", "10000", "-o", OUT), 2,
     r"--threads 10,000 is more than 4 per core for the \d+ core\(s\)"),
    ("batch-size-over-memory", _with(lambda d, m, x: [
        "run", dynamic_model(d), _folder(d), *FAST, "--n", "5000", "--batch-size", "5000",
        "-c", _write(d / "c.yaml", "preprocess: {size: [512, 512]}\n"), "-o", d / "r.json"]), 2,
     r"a batch of 5,000 sample\(s\) of shape 3x512x512 needs about .*; lower --batch-size"),
    ("npz-header-claims-1e12-rows", _run("run", M, lambda d, m, x: npz_with_header(d / "h.npz", (10**12, *SHAPE)),
                                         *FAST, "-o", OUT), 2,
     r"array 'x' is truncated or corrupt: its header declares \[1000000000000, 3, 4, 4\] float32"),
    ("npz-inflates-past-memory", _run("run", M, lambda d, m, x: (np.savez_compressed(
        d / "z.npz", x=np.zeros((64, *SHAPE), np.float32)), d / "z.npz")[1], *FAST, "-o", OUT,
        env={"ONNXCERT_MEMORY": "16K"}), 2,
     r"z.npz' inflates to 12.0 KiB when loaded \('x': \[64, 3, 4, 4\] float32\), more than half .*save x as a .npy"),
    ("npy-header-claims-more-than-file", _run("run", M, lambda d, m, x: npy_with_header(d / "h.npy", (10**9, *SHAPE)),
                                              *FAST, "-o", OUT), 2,
     r"h.npy' is truncated or corrupt: its header declares \[1000000000, 3, 4, 4\] float32"),
    ("scores-npz-inflates-past-memory", _run("certify-scores", lambda d, m, x: _scores_npz(d), "--sigma", "0.25",
                                             "-o", OUT, env={"ONNXCERT_MEMORY": "1M"}), 2,
     r"s.npz' inflates to 3.1 MiB when loaded \('estimation': \[4, 20000, 10\] float32\).*split the inputs"),
    ("dynamic-hw-size-40000", _with(lambda d, m, x: [
        "run", dynamic_model(d), _folder(d), *FAST,
        "-c", _write(d / "c.yaml", "preprocess: {size: [40000, 40000]}\n"), "-o", d / "r.json"]), 2,
     r"a batch of 1 sample\(s\) of shape 3x40000x40000 needs about .*; set a smaller preprocess.size"),
    ("huge-image-resize-none", _with(lambda d, m, x: [
        "run", dynamic_model(d), _folder(d, lambda r: png_header(r / "1" / "z.png", 9000, 9000)), *FAST,
        "-c", _write(d / "c.yaml", "preprocess: {resize: none, crop: none}\n"), "-o", d / "r.json"],
        {"ONNXCERT_MEMORY": "8G"}), 2,
     r"shape 3x9000x9000 \(image '.*z.png'\) needs about .*preprocess.resize to scale images down"),
    # 2. bombs in structured input; every message caps what it quotes
    ("yaml-alias-bomb", _run("run", M, X, *FAST, "-c", lambda d, m, x: _write(d / "b.yaml", ALIAS_BOMB), "-o", OUT), 2,
     r"b.yaml' expands to more than 1,000,000 values \(YAML aliases .*alias bomb"),
    ("yaml-deep-nesting", _run("run", M, X, *FAST, "-c", lambda d, m, x: _write(
        d / "n.yaml", "smoothing: {sigma: " + "[" * 20_000 + "]" * 20_000 + "}\n"), "-o", OUT), 2,
     r"n.yaml' is nested too deeply"),
    ("yaml-recursive-alias", _run("run", M, X, *FAST, "-c", lambda d, m, x: _write(
        d / "r.yaml", "smoothing: {sigma: &a [*a]}\n"), "-o", OUT), 2, r"r.yaml' is nested too deeply"),
    ("yaml-megabyte-value", _run("run", M, X, "--n0", "10", "--n", "50", "-c", lambda d, m, x: _write(
        d / "v.yaml", "smoothing: {sigma: " + "x" * 1_000_000 + "}\n"), "-o", OUT), 2,
     r"smoothing.sigma must be a finite number, got 'x{20,80}\.\.\."),
    ("yaml-megabyte-key", _run("run", M, X, *FAST, "-c", lambda d, m, x: _write(
        d / "k.yaml", "smoothing:\n  ? " + "k" * 1_000_000 + "\n  : 1\n"), "-o", OUT), 2,
     r"unknown key smoothing.k{20,80}\.\.\. "),
    ("metadata-deep-json-run", _run("run", lambda d, m, x: _metadata_model(d, '{"sigma": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                                    X, "--n0", "10", "--n", "50", "-o", OUT), 2,
     r"meta.onnx metadata: onnxcert.smoothing is nested too deeply"),
    ("metadata-deep-json-inspect", _run("inspect", lambda d, m, x: _metadata_model(
        d, '{"sigma": ' + "[" * 100_000 + "]" * 100_000 + "}")), 2, r"onnxcert.smoothing is nested too deeply"),
    ("metadata-5000-digit-int", _run("run", lambda d, m, x: _metadata_model(d, '{"sigma": 1' + "0" * 5000 + "}"),
                                     X, "--n0", "10", "--n", "50", "-o", OUT), 2,
     r"onnxcert.smoothing is not valid JSON \("),
    ("report-deep-json-summary", _run("summary", lambda d, m, x: _deep_report(d)), 2, r"rep.json' is nested too deeply"),
    ("report-deep-json-gate", _run("gate", lambda d, m, x: _deep_report(d), "--measure", "label", "--radius", "0",
                                   "--min-accuracy", "0"), 2, r"rep.json' is nested too deeply"),
    ("report-5000-digit-int", _run("summary", lambda d, m, x: _long_int_report(d)), 2, r"rep.json' is not valid JSON \("),
    ("report-megabyte-string", _run("summary", lambda d, m, x: report(d, sigma="s" * 1_000_000)), 2,
     r"settings.sigma must be a finite number, got 's{20,80}\.\.\."),
    ("rules-alias-bomb", _run("gate", lambda d, m, x: report(d), "--rules",
                              lambda d, m, x: _write(d / "rules.yaml", ALIAS_BOMB)), 2,
     r"rules file '.*rules.yaml' expands to more than"),
    # 3. special files and directories where a file is expected: never a hang, the right message
    ("fifo-as-npy-input", _run("run", M, lambda d, m, x: fifo(d / "in.npy"), *FAST, "-o", OUT), 2,
     r"input '.*in.npy' is a FIFO \(named pipe\), not a regular file"),
    ("fifo-as-image-input", _run("run", M, lambda d, m, x: fifo(d / "in.png"), *FAST, "-o", OUT), 2,
     r"input '.*in.png' is a FIFO"),
    ("fifo-as-config", _run("run", M, X, *FAST, "-c", lambda d, m, x: fifo(d / "c.yaml"), "-o", OUT), 2,
     r"config file '.*c.yaml' is a FIFO"),
    ("fifo-as-model", _run("run", lambda d, m, x: fifo(d / "m.onnx"), X, *FAST, "-o", OUT), 3,
     r"model file '.*m.onnx' is a FIFO"),
    ("fifo-as-report", _run("summary", lambda d, m, x: fifo(d / "rep.json")), 2, r"report '.*rep.json' is a FIFO"),
    ("fifo-as-rules", _run("gate", lambda d, m, x: report(d), "--rules", lambda d, m, x: fifo(d / "r.yaml")), 2,
     r"rules file '.*r.yaml' is a FIFO"),
    ("fifo-as-scores", _run("certify-scores", lambda d, m, x: fifo(d / "s.npz"), "--sigma", "0.25", "-o", OUT), 2,
     r"scores file '.*s.npz' is a FIFO"),
    ("dev-zero-as-npy", _run("run", M, lambda d, m, x: (os.symlink("/dev/zero", d / "z.npy"), d / "z.npy")[1],
                             *FAST, "-o", OUT), 2, r"input '.*z.npy' is a character device, not a regular file"),
    ("directory-as-model", _run("run", lambda d, m, x: (d / "m.onnx").mkdir() or d / "m.onnx", X, *FAST, "-o", OUT), 3,
     r"model file '.*m.onnx' is a directory, not a file"),
    ("directory-as-config", _run("run", M, X, *FAST, "-c", lambda d, m, x: (d / "c.yaml").mkdir() or d / "c.yaml",
                                 "-o", OUT), 2, r"config file '.*c.yaml' is a directory, not a file"),
    ("directory-as-report", _run("summary", lambda d, m, x: (d / "rep.json").mkdir() or d / "rep.json"), 2,
     r"report '.*rep.json' is a directory, not a file"),
    ("directory-as-scores", _run("certify-scores", lambda d, m, x: (d / "s.npz").mkdir() or d / "s.npz",
                                 "--sigma", "0.25", "-o", OUT), 2, r"scores file '.*s.npz' is a directory"),
    # 3. outputs, checked before the first forward pass
    ("output-is-a-directory", _run("run", M, X, *FAST, "-o", lambda d, m, x: (d / "o.json").mkdir() or d / "o.json"), 2,
     r"the report '.*o.json' is a directory; give a file name"),
    ("output-parent-is-a-file", _run("run", M, X, *FAST, "-o", lambda d, m, x: _write(d / "f.txt", "x") / "r.json"), 2,
     r"cannot write the report '.*f.txt/r.json': '.*f.txt' is a file, not a folder"),
    ("output-grandparent-is-a-file", _run("run", M, X, *FAST, "-o",
                                          lambda d, m, x: _write(d / "f.txt", "x") / "a" / "b" / "r.json"), 2,
     r"'.*f.txt' is a file, not a folder"),
    ("scores-output-is-a-directory", _run("certify-scores", lambda d, m, x: _small_scores(d), "--sigma", "0.25", "-o",
                                          lambda d, m, x: (d / "o.csv").mkdir() or d / "o.csv"), 2,
     r"the report '.*o.csv' is a directory"),
    ("run-junit-is-a-directory", _run("run", M, X, *FAST, "-o", OUT, "--gate",
                                      lambda d, m, x: _write(d / "g.yaml", "- {measure: label, radius: 0, max_abstain_rate: 1}\n"),
                                      "--junit", lambda d, m, x: (d / "j.xml").mkdir() or d / "j.xml"), 2,
     r"the JUnit file '.*j.xml' is a directory"),
    ("gate-junit-is-a-directory", _run("gate", lambda d, m, x: report(d), "--measure", "label", "--radius", "0",
                                       "--max-abstain-rate", "1", "--junit", lambda d, m, x: (d / "j").mkdir() or d / "j"), 2,
     r"the JUnit file '.*j' is a directory"),
    ("plot-output-is-a-directory", _run("plot", lambda d, m, x: report(d), "-o",
                                        lambda d, m, x: (d / "p.png").mkdir() or d / "p.png"), 2,
     r"the figure '.*p.png' is a directory"),
    ("journal-lock-is-a-symlink", _run("run", M, X, *FAST, "-o", lambda d, m, x: (
        os.symlink(d / "elsewhere", d / ".r.jsonl.lock"), d / "r.json")[1]), 2,
     r"'.*\.r\.jsonl\.lock' cannot be created"),
    # 5. reports are checked, not trusted
    ("summary-correct-contradicts", _run("summary", lambda d, m, x: _edited_correct(d, 1, 0, True)), 2,
     r"rep.json: record 0 says correct=true but its label 1 and prediction 0 say false"),
    ("gate-correct-contradicts", _run("gate", lambda d, m, x: _edited_correct(d, 0, 0, False), "--measure", "score",
                                      "--method", "naive", "--threshold", "0.5", "--radius", "0", "--min-accuracy", "0"),
     2, r"record 0 says correct=false but its label 0 and prediction 0 say true"),
    ("summary-correct-without-label", _run("summary", lambda d, m, x: _edited_correct(d, None, 0, True)), 2,
     r"record 0 says correct=true but its label null and prediction 0 say null"),
    ("summary-record-without-prediction", _run("summary", lambda d, m, x: report(d, records=[
        {"index": 0, "label": 0, "correct": True, "label_certificate": {"radius": None}, "confidence": {}}])), 2,
     r"record 0 has no 'prediction'"),
    # 7. CLI basics
    ("unknown-option", _run("run", M, X, "--sigmaa", "0.25"), 2, r"onnxcert run: No such option: --sigmaa"),
    ("option-of-the-wrong-type", _run("run", M, X, "--n", "many"), 2, r"onnxcert run: Invalid value for '--n'"),
    ("missing-argument", _run("run", M), 2, r"onnxcert run: Missing argument 'inputs'"),
    ("unknown-command", _run("certify-everything"), 2, r"No such command 'certify-everything'"),
]


def _small_scores(d: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(d / "small.npz", estimation=rng.random((2, 50, 3)).astype(np.float32),
             selection=rng.random((2, 10, 3)).astype(np.float32))
    return d / "small.npz"


def test_case_count():
    """The report of issue 15 quotes this number; keep it honest."""
    assert len(CASES) == 50


@pytest.fixture
def model(tmp_path) -> Path:
    return om.constant(tmp_path / "const.onnx", [0.7, 0.2, 0.1], shape=SHAPE)


@pytest.fixture
def npy(tmp_path) -> Path:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32))
    return tmp_path / "x.npy"


def invoke_with_deadline(args, seconds: float = 120.0):
    """``cli(*args)`` in a thread; a command still running after ``seconds`` (a read blocked on a
    FIFO) fails the test instead of hanging the suite."""
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("res", cli(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        for a in args:  # unblock a reader stuck on one of our FIFOs, so the thread can end
            if isinstance(a, Path) and a.exists() and a.is_fifo():
                with open(os.open(a, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                    pass
        pytest.fail(f"onnxcert {' '.join(map(str, args))} still runs after {seconds:g} s")
    return out["res"]


@pytest.mark.parametrize("build, code, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_command_gets_one_capped_line(tmp_path, model, npy, monkeypatch, build, code, pattern):
    monkeypatch.chdir(tmp_path)
    args, env = build(tmp_path, model, npy)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    res = invoke_with_deadline(args)
    assert res.exit_code == code, res.output[-3000:]
    line = error_line(res)
    assert len(line) <= MAX_LINE, line[:500]
    import re

    assert re.search(pattern, line), line
    assert not (tmp_path / "r.json").exists()  # no report


# ---------------------------------------------------------------- resources: what still runs


def test_batch_size_above_n_is_cut_to_n(tmp_path, model, npy):
    """--batch-size 10^9 with --n 200 ran out of memory; a batch larger than an input's samples is useless."""
    res = cli("run", model, npy, *FAST, "--n", "200", "--batch-size", "1000000000", "-o", tmp_path / "r.json", "-q")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["batch_size"] == 200


def test_batch_size_comes_from_the_largest_image(tmp_path):
    """With a dynamic height and width and resize none, images keep their size: the automatic
    batch size must fit the largest one, not the first one decoded."""
    from onnxcert import pipeline
    from onnxcert.sampling import BATCH_MEMORY_BUDGET, auto_batch_size

    good_png(tmp_path / "imgs" / "a.png", size=(8, 8))
    good_png(tmp_path / "imgs" / "b.png", size=(200, 200))
    file = {"preprocess": {"resize": "none", "crop": "none"}, "smoothing": {"sigma": 0.25, "n": 2000, "n0": 10}}
    setup = pipeline.prepare(dynamic_model(tmp_path), tmp_path / "imgs", file=file)
    lanes = setup.classifier.session_options["lanes"]  # each lane holds a batch: they share the budget
    assert setup.config.settings.batch_size == auto_batch_size((3, 200, 200), 2000, budget=BATCH_MEMORY_BUDGET // lanes)
    assert auto_batch_size((3, 200, 200), 2000) < auto_batch_size((3, 8, 8), 2000)  # the test can fail


def test_memory_figure_is_the_kernels(monkeypatch):
    from onnxcert import limits

    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    got = limits.available_memory()
    assert got is None or got > 0
    monkeypatch.setenv(limits.MEMORY_ENV, "3G")
    assert limits.available_memory() == 3 << 30
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    with pytest.raises(onnxcert.ConfigError, match="ONNXCERT_MEMORY must be a size"):
        limits.available_memory()


# ---------------------------------------------------------------- bombs: the checks themselves


def test_alias_bomb_is_measured_without_expanding_it():
    from onnxcert.untrusted import check_tree, quote

    data = yaml.safe_load(ALIAS_BOMB)  # shares nodes: small in memory, 9**9 values expanded
    start = time.perf_counter()
    with pytest.raises(onnxcert.InputError, match="expands to more than"):
        check_tree(data, "bomb")
    assert len(quote(data)) <= 80
    assert time.perf_counter() - start < 5  # a generous bound: expanding it would take hours
    check_tree({"a": [1, 2, {"b": [3]}]}, "small")  # a normal tree passes


def test_quote_caps_any_value():
    from onnxcert.untrusted import quote

    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert len(quote(deep)) <= 80 and len(quote("x" * 10**6)) <= 80 and len(quote(10**4000)) <= 80
    assert quote(0.5) == "0.5" and quote("big") == "'big'" and quote([0, -0.5]) == "[0, -0.5]"


# ---------------------------------------------------------------- inputs: FIFOs, folders, names


def test_fifo_in_a_folder_is_skipped_not_waited_on(tmp_path):
    root = _folder(tmp_path, lambda r: fifo(r / "1" / "p.png"))
    res = invoke_with_deadline(["run", om.channel_means(tmp_path / "m.onnx", size=(4, 4)), root, *FAST,
                                "-o", tmp_path / "r.json"])
    assert res.exit_code == 0, res.output
    skipped = json.loads((tmp_path / "r.json").read_text())["skipped"]
    assert [Path(s["input"]).name for s in skipped] == ["p.png"] and "is a FIFO" in skipped[0]["reason"]


def test_unreadable_class_folder_is_warned_and_listed(tmp_path, monkeypatch):
    """Its images used to vanish without a word. As root, chmod does not stop reading a folder,
    so the permission error is simulated at os.scandir (the call os.walk makes)."""
    root = _folder(tmp_path)
    good_png(root / "2" / "c.png")
    locked = root / "2"
    if ROOT:
        real = os.scandir

        def scandir(path="."):
            if Path(os.fsdecode(path)) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        locked.chmod(0)
        monkeypatch.setattr(Path, "chmod", Path.chmod)  # restored below either way
    try:
        res = cli("run", om.channel_means(tmp_path / "m.onnx", size=(4, 4)), root, *FAST, "-o", tmp_path / "r.json")
    finally:
        if not ROOT:
            locked.chmod(0o755)
    assert res.exit_code == 0, res.output
    assert "onnxcert: skipping: folder" in res.output and "Permission denied" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["skipped"] == [{"index": None, "input": str(locked),
                                "reason": f"folder '{locked}' cannot be read (Permission denied); its images are not certified"}]
    assert len(data["records"]) == 2 and "1 input(s) skipped" in res.output


def test_non_utf8_file_names_give_both_reports(tmp_path):
    """A file name of raw bytes used to crash the CSV writer after the JSON was written."""
    root = _folder(tmp_path)
    raw = os.fsencode(root / "1") + b"/caf\xe9.png"
    try:
        with open(raw, "wb") as fh:
            fh.write((root / "1" / "b.png").read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    res = cli("run", om.channel_means(tmp_path / "m.onnx", size=(4, 4)), root, *FAST,
              "-o", tmp_path / "r.json", "-o", tmp_path / "r.csv")
    assert res.exit_code == 0, res.output
    names = [r["input"] for r in json.loads((tmp_path / "r.json").read_text())["records"]]
    assert any(n.endswith("caf\udce9.png") for n in names)  # the name as Python's os functions give it
    assert b"caf\xe9.png" in (tmp_path / "r.csv").read_bytes()  # the same bytes as on disk


# ---------------------------------------------------------------- outputs: full disk, symlinks, all-or-none


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


TMPFS = _can_mount_tmpfs()


def in_small_tmpfs(tmp_path: Path, size: str, script: str, ro: bool = False) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) in a private mount namespace where ``tmp_path / 'disk'`` is a tmpfs of
    ``size`` (read-only with ``ro``); the mount vanishes with the namespace."""
    disk = tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    mount = f"mount -t tmpfs -o size={size}{',ro' if ro else ''} tmpfs {disk}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && {script}"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)


ONNXCERT = f"{sys.executable} -m onnxcert.cli"


@pytest.mark.skipif(not TMPFS, reason="no private mount namespace here (unshare -rm); ENOSPC is injected below")
def test_full_disk_while_journaling_keeps_what_was_written(tmp_path):
    """A 16 KiB tmpfs holds the header and a few records; the run ends with one line, the
    journal keeps every record it holds (readable by --resume), and no report is written."""
    model = om.constant(tmp_path / "m.onnx", [0.7, 0.2, 0.1], shape=SHAPE)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, *SHAPE)).astype(np.float32))
    check = (f"{sys.executable} -c \"import sys; from onnxcert.journal import read_journal; "
             f"print('kept', len(read_journal(sys.argv[1]).records))\" disk/r.jsonl")
    res = in_small_tmpfs(tmp_path, "16k", f"{ONNXCERT} run m.onnx x.npy {' '.join(FAST)} -o disk/r.json -q; "
                                          f"echo rc=$?; {check}; ls -a disk")
    out = res.stdout + res.stderr
    assert "rc=2" in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("onnxcert: error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "--resume" in lines[0], out
    assert "Traceback" not in out
    kept = int(out.split("kept ")[1].split()[0])
    assert 0 < kept < 40 and f"the {kept} input(s) before it are kept" in lines[0], out
    listing = out.split("kept ")[1].split()[1:]
    assert "r.json" not in listing and not any(n.endswith(".tmp") for n in listing), listing


@pytest.mark.skipif(not TMPFS, reason="no private mount namespace here (unshare -rm)")
def test_read_only_output_folder_is_refused_before_any_work(tmp_path):
    """Root ignores chmod, not a read-only mount."""
    model = om.constant(tmp_path / "m.onnx", [0.7, 0.2, 0.1], shape=SHAPE)
    np.save(tmp_path / "x.npy", np.zeros((2, *SHAPE), np.float32))
    res = in_small_tmpfs(tmp_path, "64k", f"{ONNXCERT} run m.onnx x.npy {' '.join(FAST)} -o disk/r.json; echo rc=$?",
                         ro=True)
    out = res.stdout + res.stderr
    assert "rc=2" in out and "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("onnxcert: error:")]
    assert len(lines) == 1 and "does not accept new files (Read-only file system)" in lines[0], out
    assert "samples/s" not in out  # refused before certifying


def test_read_only_output_folder_without_root_or_namespace(tmp_path, model, npy):
    if ROOT:
        pytest.skip("root ignores directory permissions; the read-only mount test covers this")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        res = cli("run", model, npy, *FAST, "-o", tmp_path / "ro" / "r.json")
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert res.exit_code == 2 and "does not accept new files" in error_line(res)


def test_full_disk_while_writing_reports_writes_neither(tmp_path, model, npy, monkeypatch):
    """ENOSPC injected at the second report's fsync: neither report appears, no temporary file
    is left, the journal keeps every input, and --resume then writes both."""
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(files_mod.os, "fsync", fsync)
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "-o", tmp_path / "r.csv")
    monkeypatch.undo()
    assert res.exit_code == 2, res.output
    line = error_line(res)
    assert "cannot write the report" in line and "No space left on device" in line and "--resume" in line
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert sorted(read_journal(tmp_path / "r.jsonl").records) == [0, 1, 2]
    again = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "-o", tmp_path / "r.csv", "--resume")
    assert again.exit_code == 0 and (tmp_path / "r.json").exists() and (tmp_path / "r.csv").exists()


def test_full_disk_in_the_journal_injected(tmp_path, model, npy, monkeypatch):
    """The same as the tmpfs test, with ENOSPC injected at the third journal line (for machines
    without a private mount namespace)."""
    original, count = journal_mod.JournalWriter._emit, []

    def emit(self, event):
        count.append(1)
        if len(count) == 4:  # header, output kind, record 0, then record 1
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, event)

    monkeypatch.setattr(journal_mod.JournalWriter, "_emit", emit)
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json")
    monkeypatch.undo()
    assert res.exit_code == 2, res.output
    assert "the 1 input(s) before it are kept there: make room and run the same command with --resume" in error_line(res)
    assert sorted(read_journal(tmp_path / "r.jsonl").records) == [0] and not (tmp_path / "r.json").exists()


def test_force_never_writes_through_a_symlinked_journal(tmp_path, model, npy):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    os.symlink(precious, tmp_path / "r.jsonl")
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "--force")
    assert res.exit_code == 0, res.output
    assert precious.read_text() == "keep me\n"
    assert not (tmp_path / "r.jsonl").is_symlink() and len(read_journal(tmp_path / "r.jsonl").records) == 3


def test_resume_refuses_a_symlinked_journal(tmp_path, model, npy):
    assert cli("run", model, npy, *FAST, "-o", tmp_path / "a.json").exit_code == 0
    os.symlink(tmp_path / "a.jsonl", tmp_path / "r.jsonl")
    before = (tmp_path / "a.jsonl").read_bytes()
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 2 and "is a symbolic link" in error_line(res)
    assert (tmp_path / "a.jsonl").read_bytes() == before


# ---------------------------------------------------------------- concurrent runs


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode() + b"\\n")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_run_refuses_a_journal_another_process_holds(tmp_path, model, npy):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".r.jsonl.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ((), ("--force",), ("--resume",)):
            res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", *extra)
            assert res.exit_code == 2, res.output
            assert f"another onnxcert run (pid {holder.pid}) is writing '{tmp_path / 'r.jsonl'}'" in error_line(res)
        assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.jsonl").exists()
        assert (tmp_path / ".r.jsonl.lock").exists()  # the holder's lock is left alone
    finally:
        holder.kill()
        holder.wait()
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json")  # once it is gone, runs go on
    assert res.exit_code == 0 and not (tmp_path / ".r.jsonl.lock").exists()


def test_a_second_run_while_the_first_is_running_refuses(tmp_path):
    """Run A (a process) is certifying; run B with the same -o starts while A holds the journal:
    B exits 2 with one line, A finishes, and the journal holds each input exactly once."""
    model = om.constant(tmp_path / "m.onnx", [0.7, 0.2, 0.1], shape=SHAPE)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((60, *SHAPE)).astype(np.float32))
    cmd = [sys.executable, "-m", "onnxcert.cli", "run", "m.onnx", "x.npy", *FAST, "--n", "20000", "-o", "r.json", "-q"]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "r.jsonl").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        second = cli("run", tmp_path / "m.onnx", tmp_path / "x.npy", *FAST, "--n", "20000", "-o", tmp_path / "r.json")
        still_running = first.poll() is None
    finally:
        out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out
    if not still_running:
        pytest.skip("run A finished before run B could start (a very fast machine): no overlap to test")
    assert second.exit_code == 2, second.output
    assert f"another onnxcert run (pid {first.pid}) is writing '{tmp_path / 'r.jsonl'}'" in error_line(second)
    raw = (tmp_path / "r.jsonl").read_text().splitlines()
    assert sorted(read_journal(tmp_path / "r.jsonl").records) == list(range(60)) and len(raw) == 1 + 1 + 60


def test_a_torn_journal_header_is_recovered(tmp_path, model, npy):
    """A crash while the header was written leaves part of it; --resume starts over."""
    (tmp_path / "r.jsonl").write_text('{"journal": "onnxcert.journal/1", "onnxcert_ver')
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 0, res.output
    assert "holds only a torn header" in res.output
    assert len(json.loads((tmp_path / "r.json").read_text())["records"]) == 3


def test_a_file_that_is_not_a_torn_header_is_not_overwritten(tmp_path, model, npy):
    (tmp_path / "r.jsonl").write_text("my notes, no newline")
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 2 and "is not an onnxcert journal" in error_line(res)
    assert (tmp_path / "r.jsonl").read_text() == "my notes, no newline"


# ---------------------------------------------------------------- Ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_address_with_nothing_listening(tmp_path, model, npy):
    pytest.importorskip("ray")
    port = _free_port()
    start = time.monotonic()
    res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "--backend", "ray", "--address", f"127.0.0.1:{port}")
    assert res.exit_code == 2, res.output
    assert f"cannot connect to Ray at 127.0.0.1:{port}: nothing answers" in error_line(res)
    assert time.monotonic() - start < 60  # it was more than 5 minutes (generous: importing ray is slow)


def test_ray_address_that_is_not_a_ray_cluster(tmp_path, model, npy):
    """A server that accepts connections and never answers gRPC (ray.init waited minutes)."""
    pytest.importorskip("ray")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        res = cli("run", model, npy, *FAST, "-o", tmp_path / "r.json", "--backend", "ray",
                  "--address", f"127.0.0.1:{port}")
    finally:
        server.close()
    assert res.exit_code == 2 and "does not answer as a Ray cluster does" in error_line(res)


class FakeRay:
    """ray.init that never connects: it retries in a Python loop, as Ray's own does."""

    def __init__(self, install_sigterm: bool = False):
        self.install_sigterm, self.shut = install_sigterm, False

    def init(self, **kwargs):
        if self.install_sigterm:  # what ray.init does: SIGTERM -> sys.exit(15)
            signal.signal(signal.SIGTERM, lambda s, f: sys.exit(s))
        while True:
            try:
                time.sleep(0.05)
            except Exception:  # Ray's retry loops swallow exceptions
                pass

    def shutdown(self):
        self.shut = True


def test_ray_connect_gives_up_after_its_time():
    from onnxcert.ray_backend import bounded_connect

    ray = FakeRay()
    start = time.monotonic()
    with pytest.raises(onnxcert.ConfigError, match="cannot connect to Ray at X: no answer within 0.3 s"):
        with bounded_connect(ray, "X", timeout=0.3):
            ray.init()
    assert ray.shut and time.monotonic() - start < 30


@pytest.mark.parametrize("signum, install", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["sigint", "sigterm", "sigterm-after-ray-took-the-handler"])
def test_ray_connect_stops_on_a_signal(signum, install):
    from onnxcert.ray_backend import bounded_connect

    ray = FakeRay(install_sigterm=install)
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signum)).start()
    with pytest.raises(onnxcert.RunInterrupted) as info:
        with bounded_connect(ray, "X", timeout=60):
            ray.init()
    assert info.value.exit_code == 130
    assert f"stopped by {signal.Signals(signum).name} while connecting to Ray at X" in str(info.value)
    signal.signal(signal.SIGTERM, before)


# ---------------------------------------------------------------- CLI basics and reports


def test_version():
    res = cli("--version")
    assert res.exit_code == 0 and res.output.strip() == f"onnxcert {onnxcert.__version__}"


def test_api_gate_refuses_a_contradicting_record(tmp_path):
    path = _edited_correct(tmp_path, 1, 0, True)
    with pytest.raises(onnxcert.InputError, match="record 0 says correct=true"):
        onnxcert.gate_report(path, measure="score", method="naive", threshold=0.5, radius=0, min_accuracy=0)
