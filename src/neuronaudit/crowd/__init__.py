"""Real ratings: export, import, aggregation and interval estimates (issue 9)."""
