"""Reading results back: ``read`` (schema, parsing, checks), ``metrics`` (the only certified
accuracy, clean accuracy, abstain rate and mean radius code) and ``render`` (rich, Markdown,
CSV, JSON)."""
