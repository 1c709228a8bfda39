"""``python -m exporters ...`` from the repository root: the same as ``python -m onnxcert.exporters``."""

import sys

from onnxcert.exporters.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
