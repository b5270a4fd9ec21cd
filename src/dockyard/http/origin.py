"""Is a browser request cross-site? (``Origin``, else ``Referer``, against our own host.)

Browsers send ``Origin`` on every cross-site ``POST`` (and ``Referer`` unless a policy
strips it), so a request that names a foreign site there was made by another
site's page. A request naming none comes from a program (a Harbor API client,
curl), which a hostile page cannot make a browser send. The host is compared
without the scheme, so a console behind a TLS-terminating proxy still matches.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _authority(scheme: str, host: str | None, port: int | None) -> str | None:
    if not host:
        return None
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return host.lower()
    return f"{host.lower()}:{port}"


def _of_url(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS:
        return None
    return _authority(parts.scheme, parts.hostname, port)


def _of_host_header(host: str, scheme: str) -> str | None:
    return _of_url(f"{scheme}://{host}")


def foreign_source(
    origin: str | None, referer: str | None, host: str | None, scheme: str, external_url: str
) -> str | None:
    """The foreign site a request says it comes from, or None when same-site or unsaid."""
    source = origin if origin is not None else referer
    if source is None or not source.strip():
        return None
    ours = {_of_url(external_url) if external_url else None}
    if host:
        ours.add(_of_host_header(host, scheme))
    ours.discard(None)
    theirs = _of_url(source)
    if theirs is None or theirs not in ours:
        return source[:200]
    return None
