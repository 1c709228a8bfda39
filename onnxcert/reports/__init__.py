"""Reading results back: ``read`` (schema, parsing, checks), ``metrics`` (the only certified
accuracy, clean and smoothed accuracy, abstain rate and mean radius code), ``render`` (rich,
Markdown, CSV, JSON, LaTeX) and ``html`` (one self-contained page, with the inline SVG of ``svg``)."""
