"""Pure OCI helpers: digests, names, media types, manifests, scopes, ranges.

Nothing in this package does I/O; every function is deterministic and raises
only the classes from :mod:`dockyard.errors`.
"""
