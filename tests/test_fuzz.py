"""Fuzzing (issue 8): random configs at the config loader, random arrays and settings at
certify-scores. The only acceptable outcomes are a valid report or an OnnxCertError whose message
is one non-empty line; anything else (a crash, a traceback, NaN in a report) fails.

Cost is kept modest for CI: 60 + 30 + 60 + 20 = 170 examples, derandomized so that a failure
reproduces; run with HYPOTHESIS_PROFILE=long for a deeper search.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import onnxcert
from onnxcert.cli import app
from onnxcert.config import SCHEMA, Config, build_config, load_yaml
from onnxcert.errors import OnnxCertError
from onnxcert.report import SCHEMA as REPORT_SCHEMA
from onnxcert.report import to_json
from onnxcert.reports.read import parse_report

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
EXAMPLES = {"config": 60, "yaml": 30, "arrays": 60, "cli": 20}


def fuzz(kind: str):
    return settings(max_examples=EXAMPLES[kind] * (20 if LONG else 1), deadline=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_clean_error(exc: OnnxCertError) -> None:
    message = str(exc)
    assert message.strip() and "\n" not in message, repr(message)
    assert exc.exit_code in (2, 3), exc


# ---------------------------------------------------------------- values

NUMBERS = st.one_of(
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, -1, 0.5, 1e-300, 1e300, 10 ** 400, 0.001, 100_000, True, False]),
)
SCALARS = st.one_of(st.none(), NUMBERS, st.text(max_size=12),
                    st.sampled_from(["auto", "logits", "NCHW", "RGB", "L", "score", "cdf-bj", "naive", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
KEYS = sorted({k for keys in SCHEMA.values() for k in keys})


@st.composite
def sections(draw):
    """Mostly the real sections and keys, with plausible or garbage values; sometimes garbage names."""
    layer = {}
    for section in draw(st.lists(st.sampled_from([*SCHEMA, "smoothin", "extra"]), max_size=4, unique=True)):
        if draw(st.integers(0, 9)) == 0:
            layer[section] = draw(VALUES)  # a section that is not a mapping
            continue
        names = list(SCHEMA.get(section, KEYS))
        keys = draw(st.lists(st.sampled_from(names + ["sigam", "thresholds"]), max_size=5, unique=True))
        body = {}
        for key in keys:
            if key == "thresholds" and draw(st.booleans()):
                body[key] = draw(st.dictionaries(st.sampled_from(["score", "margin", "scor"]),
                                                 st.one_of(st.lists(NUMBERS, max_size=4), VALUES), max_size=2))
            else:
                body[key] = draw(st.one_of(VALUES, st.lists(NUMBERS, min_size=1, max_size=4)))
        layer[section] = body
    return layer


@st.composite
def valid_sections(draw):
    """A config that should load, built from allowed values only."""
    fl = lambda lo, hi: st.floats(lo, hi, exclude_min=True, exclude_max=True)  # noqa: E731
    measures = draw(st.lists(st.sampled_from(["score", "margin"]), min_size=1, max_size=2, unique=True))
    return {
        "model": {"output_kind": draw(st.sampled_from(["auto", "logits", "probabilities"])),
                  "classes": draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4))},
        "preprocess": {"size": draw(st.lists(st.integers(1, 512), min_size=2, max_size=2)),
                       "resize": draw(st.sampled_from(["exact", "shorter", "none"])),
                       "channels": draw(st.sampled_from(["RGB", "BGR", "L"])),
                       "layout": draw(st.sampled_from(["NCHW", "NHWC"])),
                       "mean": [draw(fl(0, 1))], "std": [draw(fl(0, 1))]},
        "smoothing": {"sigma": draw(fl(0, 2)), "alpha": draw(fl(0, 1)), "n0": draw(st.integers(1, 1000)),
                      "n": draw(st.integers(2, 10 ** 6)), "seed": draw(st.integers(0, 2 ** 31)),
                      "batch_size": draw(st.one_of(st.none(), st.integers(1, 4096)))},
        "certify": {"measures": measures,
                    "methods": draw(st.lists(st.sampled_from(["naive", "cdf-dkw", "cdf-bj"]), min_size=1,
                                             max_size=3, unique=True)),
                    "thresholds": {"score": draw(st.lists(fl(0, 1), min_size=1, max_size=4)),
                                   "margin": draw(st.lists(fl(-1, 1), min_size=1, max_size=4))},
                    "radii": draw(st.lists(st.floats(0, 10), min_size=1, max_size=5))},
    }


@st.composite
def perturbed_sections(draw):
    """A valid config with one to three values replaced by anything at all."""
    layer = draw(valid_sections())
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(layer)))
        key = draw(st.sampled_from(sorted(layer[section])))
        layer[section][key] = draw(VALUES)
    return layer


CONFIGS = st.one_of(valid_sections(), perturbed_sections(), sections())


def check_config(layers) -> None:
    try:
        cfg = build_config(*layers)
    except OnnxCertError as exc:
        assert_clean_error(exc)
        return
    assert isinstance(cfg, Config)
    s = cfg.settings
    assert s.sigma > 0 and 0 < s.alpha < 1 and s.n0 >= 1 and s.n >= 2
    assert all(0 < c < 1 for c in s.thresholds["score"]) and all(-1 < c < 1 for c in s.thresholds["margin"])


@fuzz("config")
@given(layer=CONFIGS, sigma_below=st.booleans())
@example(layer={"smoothing": {"n": 10 ** 400}}, sigma_below=True)  # was an OverflowError
def test_fuzz_build_config(layer, sigma_below):
    base = {"smoothing": {"sigma": 0.25}} if sigma_below else {}
    check_config([base, layer])


@fuzz("yaml")
@given(doc=st.one_of(CONFIGS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                     st.text(max_size=80),
                     st.sampled_from(["!!python/object/apply:os.system ['true']\n", "a: &x [*x]\n", "[1, 2\n",
                                      "smoothing: {sigma: !!binary aGVsbG8=}\n", "\t- x\n", "? [a, b]\n: 1\n"])))
def test_fuzz_load_yaml(doc):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(doc, encoding="utf-8")
        try:
            layer = load_yaml(path)
        except OnnxCertError as exc:
            assert_clean_error(exc)
            return
        check_config([{"smoothing": {"sigma": 0.25}}, layer])


# ---------------------------------------------------------------- arrays


DTYPES = st.sampled_from(["float64", "float32", "float16", "int64", "uint8", "int8", "bool", "complex64"])
ELEMENTS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                     st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e300, -1e300, 1e-300, 65504.0, 1e6]))


@st.composite
def score_arrays(draw):
    """estimation [B, n, k] / selection [B, n0, k]: mostly well-formed rows of probabilities or
    logits (of any scale); sometimes perturbed (a NaN, another dtype or shape, bad labels);
    sometimes anything at all."""
    mode = draw(st.sampled_from(["valid", "valid", "perturbed", "wild"]))
    if mode == "wild":
        b, n, n0, k = draw(st.integers(0, 3)), draw(st.integers(0, 30)), draw(st.integers(0, 6)), draw(st.integers(0, 4))
    else:
        b, n, n0, k = draw(st.integers(1, 3)), draw(st.integers(2, 40)), draw(st.integers(1, 6)), draw(st.integers(2, 5))
    odd = 0 if mode == "valid" else 4  # 1 in odd + 1 draws is perturbed
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    style = draw(st.sampled_from(["probabilities", "logits", "wild" if mode == "wild" else "logits"]))

    def make(rows):
        shape = (b, rows, k) if not odd or draw(st.integers(0, odd)) else tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
        if style == "probabilities":
            a = rng.dirichlet(np.ones(max(k, 1)), size=shape[:-1]) if len(shape) and shape[-1] == k and k else rng.random(shape)
        elif style == "logits":
            a = rng.normal(scale=draw(st.sampled_from([1.0, 30.0, 1e6])), size=shape)
        else:
            a = np.array(draw(st.lists(ELEMENTS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
                         ).reshape(shape) if np.prod(shape) <= 200 else rng.normal(size=shape)
        if odd and draw(st.integers(0, odd)) == 0 and a.size:
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        dtype = draw(DTYPES) if odd and draw(st.integers(0, odd)) == 0 else draw(st.sampled_from(["float64", "float32"]))
        with np.errstate(all="ignore"):
            return a.astype(dtype)

    labels = None
    if draw(st.booleans()):
        if odd:
            labels = np.array(draw(st.lists(st.integers(-2, 5), min_size=b, max_size=b + draw(st.integers(0, 1)))))
            if draw(st.integers(0, odd)) == 0:
                labels = labels.astype(draw(st.sampled_from(["float64", "int8", "uint64"])))
        else:
            labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=b, max_size=b)))
    return make(n), make(n0), labels


GOOD_SETTINGS = st.fixed_dictionaries({}, optional={
    "sigma": st.floats(0.01, 2), "alpha": st.floats(1e-9, 0.5), "seed": st.integers(0, 10),
    "measures": st.lists(st.sampled_from(["score", "margin"]), min_size=1, max_size=2, unique=True),
    "methods": st.lists(st.sampled_from(["naive", "cdf-dkw", "cdf-bj"]), min_size=1, max_size=3, unique=True),
    "thresholds": st.fixed_dictionaries({"score": st.lists(st.floats(0.01, 0.99), min_size=1, max_size=3),
                                         "margin": st.lists(st.floats(-0.99, 0.99), min_size=1, max_size=3)}),
    "radii": st.lists(st.floats(0, 10), min_size=1, max_size=4),
    "output_kind": st.sampled_from(["auto", "logits", "probabilities"]),
})
ANY_SETTINGS = st.fixed_dictionaries({}, optional={
    "sigma": st.one_of(st.floats(-1, 2), st.sampled_from([0.25, 1e-9, 1e9])),
    "alpha": st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.001, 0.5, 1e-12])),
    "seed": st.integers(-3, 3),
    "measures": st.lists(st.sampled_from(["score", "margin", "scor"]), min_size=0, max_size=3),
    "methods": st.lists(st.sampled_from(["naive", "cdf-dkw", "cdf-bj", "bogus"]), min_size=0, max_size=3),
    "thresholds": st.dictionaries(st.sampled_from(["score", "margin"]),
                                  st.lists(st.one_of(st.floats(-1.5, 1.5), st.just(float("nan"))), max_size=3), max_size=2),
    "radii": st.lists(st.one_of(st.floats(-1, 10), st.sampled_from([float("nan"), float("inf")])), max_size=4),
    "output_kind": st.sampled_from(["auto", "logits", "probabilities", "softmax"]),
    "n": st.integers(-1, 40),
})
SETTINGS = st.one_of(GOOD_SETTINGS, GOOD_SETTINGS, ANY_SETTINGS)


def check_report(result, batch: int | None) -> None:
    report = result.report
    assert report["schema"] == REPORT_SCHEMA
    text = to_json(report)  # allow_nan=False: no NaN or inf may reach a report
    assert json.loads(text)["count"] == len(report["records"]) == len(result.records)
    if batch is not None:
        assert len(report["records"]) == batch
    if report["records"]:
        parse_report(json.loads(text))
    for rec in report["records"]:
        assert rec["label_certificate"]["radius"] is None or rec["label_certificate"]["radius"] >= 0
        for measure, entry in rec["confidence"].items():
            a, b = (0, 1) if measure == "score" else (-1, 1)
            for method, c in entry.items():
                if method != "mean":
                    assert all(a - 1e-9 <= lb <= b + 1e-9 for lb in c["lower_bounds"]), c


@fuzz("arrays")
@given(arrays=score_arrays(), kwargs=SETTINGS)
def test_fuzz_certify_scores_api(arrays, kwargs):
    estimation, selection, labels = arrays
    kwargs = dict(kwargs)
    kwargs.setdefault("sigma", 0.25)
    if kwargs.get("methods") is None:
        kwargs["methods"] = ["naive", "cdf-dkw"]
    try:
        result = onnxcert.certify_scores(estimation, selection, labels, **kwargs)
    except OnnxCertError as exc:
        assert_clean_error(exc)
        return
    check_report(result, estimation.shape[0] if estimation.ndim == 3 else 1)


@fuzz("cli")
@given(arrays=score_arrays(), extra_key=st.booleans())
def test_fuzz_certify_scores_cli(arrays, extra_key):
    estimation, selection, labels = arrays
    with tempfile.TemporaryDirectory() as d:
        data = {"estimation": estimation, "selection": selection}
        if labels is not None:
            data["labels"] = labels
        if extra_key:
            data = {("estimatoin" if k == "estimation" else k): v for k, v in data.items()}
        np.savez(Path(d) / "s.npz", **data)
        res = CliRunner().invoke(app, ["certify-scores", str(Path(d) / "s.npz"), "--sigma", "0.25",
                                       "--methods", "naive,cdf-dkw", "-o", str(Path(d) / "r.json"), "-q"])
        assert "Traceback" not in res.output, res.output
        if res.exit_code == 0:
            report = json.loads((Path(d) / "r.json").read_text())
            assert report["schema"] == REPORT_SCHEMA and report["count"] == len(report["records"])
            return
        assert res.exit_code in (2, 3), (res.exit_code, res.output, res.exception)
        errors = [ln for ln in res.output.splitlines() if ln.startswith("onnxcert: error:")]
        assert len(errors) == 1 and len(errors[0]) > len("onnxcert: error: "), res.output
        assert not (Path(d) / "r.json").exists()


def test_example_budget():
    """The closing note of issue 8 reports this number."""
    assert sum(EXAMPLES.values()) == 170
