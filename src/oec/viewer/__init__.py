"""Reading runs: `oec show` (counts), `oec view` (a page per run), failure categories and the optional judge."""
