"""``python -m onnxcert.cli ...``: the same as the ``onnxcert`` command."""

from . import main

main()
