"""Online garbage collection: mark and sweep over the database while the registry serves."""
