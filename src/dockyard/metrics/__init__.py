"""Prometheus metrics (docs/metrics.md): request counters kept by a light ASGI middleware
(``middleware.py``), business gauges read from the database at scrape time with a few
aggregate queries (``service.py``), and the exposition on the main port or a listener of
its own (``routes.py``). Several Granian workers add up through ``prometheus-client``'s
multiprocess mode (``multiprocess.py``)."""
