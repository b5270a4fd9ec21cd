"""Proxy cache projects: pull-through caching of another registry (``docs/proxy-cache.md``)."""
