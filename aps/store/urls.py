"""Database URLs: whether a target (`store.url`, `store.path`, `--db`) names PostgreSQL, and a
URL as it may be shown in a log or a message, without its password."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = {"password", "sslpassword"}


def is_url(target: str) -> bool:
    return urlsplit(str(target)).scheme in SCHEMES


def redact(url: str) -> str:
    """The URL with any password (in its user part or its query) replaced by `***`; a URL
    that cannot be read is not shown at all."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)])
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<a database URL that cannot be read>"

