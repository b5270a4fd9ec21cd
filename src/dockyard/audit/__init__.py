"""The audit log: one event per change users make, written with the change."""
