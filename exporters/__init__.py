"""A thin entry kept for ``python -m exporters ...`` and ``import exporters`` from a checkout.

The code lives in ``onnxcert.exporters`` (installed with onnxcert; torch from the ``[export]``
extra). This folder is not installed: a top-level package named ``exporters`` would clash with
another well-known package of that name. Import ``onnxcert.exporters`` in code.
"""

import onnxcert.exporters as _exporters

__all__ = list(_exporters.__all__)


def __getattr__(name: str):
    return getattr(_exporters, name)
