"""Per-project storage quotas, counted over the unique blobs a project holds."""
