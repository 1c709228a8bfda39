"""`onnxcert summary`, `onnxcert plot` and `onnxcert gate` (Typer code only)."""
