"""`onnxcert run` and `onnxcert inspect` (Typer code only)."""
