"""Shared test setup: a private cache for calibrated bands, so tests never depend on ~/.cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_band_cache(tmp_path_factory):
    old = os.environ.get("ONNXCERT_CACHE_DIR")
    os.environ["ONNXCERT_CACHE_DIR"] = str(tmp_path_factory.mktemp("onnxcert-cache"))
    yield
    if old is None:
        os.environ.pop("ONNXCERT_CACHE_DIR", None)
    else:
        os.environ["ONNXCERT_CACHE_DIR"] = old
