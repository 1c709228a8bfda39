"""The public Python API: __all__ is the contract, the docstring example runs, and the functions
that mirror the commands agree with them."""

import doctest

import numpy as np
import pytest

import onnxcert

EXPECTED = {
    "__version__", "certify_model", "certify_scores", "check_model", "summarize", "gate_report", "prepare_bands",
    "CertificationResult",
    "Config", "ModelConfig", "PreprocessConfig", "Settings", "Record",
    "OnnxCertError", "ConfigError", "InputError", "ModelError", "DependencyError", "RunInterrupted",
}


def test_all_is_the_public_surface():
    assert set(onnxcert.__all__) == EXPECTED
    for name in onnxcert.__all__:
        assert hasattr(onnxcert, name), name


def test_package_docstring_example_runs():
    result = doctest.testmod(onnxcert, verbose=False)
    assert result.attempted >= 3 and result.failed == 0


def test_errors_form_one_tree():
    for cls in (onnxcert.ConfigError, onnxcert.InputError, onnxcert.ModelError,
                onnxcert.DependencyError, onnxcert.RunInterrupted):
        assert issubclass(cls, onnxcert.OnnxCertError)


def test_summarize_and_gate_mirror_the_commands():
    rng = np.random.default_rng(0)
    est = rng.dirichlet([30, 1, 1], size=(4, 2000))
    sel = rng.dirichlet([30, 1, 1], size=(4, 20))
    report = onnxcert.certify_scores(est, sel, np.array([0, 0, 0, 1]), sigma=0.25).report
    summary = onnxcert.summarize(report)
    curve = summary.curve("score", "cdf-bj", 0.5)
    assert curve is not None and curve.accuracy[0] == pytest.approx(0.75)  # 3 of 4 correct
    assert onnxcert.gate_report(report, measure="score", method="cdf-bj", threshold=0.5, radius=0.0,
                         min_accuracy=0.7).exit_code == 0
    assert onnxcert.gate_report(report, measure="score", method="cdf-bj", threshold=0.5, radius=0.0,
                         min_accuracy=0.8).exit_code == 1
