"""Reading results back: ``read`` (schema, parsing, checks), ``metrics`` (the only certified
accuracy, clean and smoothed accuracy, abstain rate and mean radius code) and ``render`` (rich, Markdown,
CSV, JSON)."""
