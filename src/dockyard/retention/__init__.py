"""Tag retention: per-project rules that decide which tags (and artifacts) to keep."""
