"""Harbor's global search (``GET /search``): projects and repositories by name."""
