"""Replication policies and executions (Harbor's /replication API); docs/replication.md."""
