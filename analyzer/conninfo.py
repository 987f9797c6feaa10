"""``DATABASE_URL``: checked with libpq's own parser before anything connects, and its secrets.

A URL libpq would refuse at connect time (an unknown parameter such as ``?foo=bar``, an invalid
``?sslmode=bogus``, a malformed percent escape) is a settings error (exit 2) when it is read, not
a retryable connection failure (75, retried forever) or an internal error (9). The password can
sit in the userinfo (``postgresql://app:pw@db/x``) or in the query (``?password=pw``): both are
found by ``url_secrets`` (for the log scrubber) and hidden by ``mask_url``.

Light: psycopg is imported only when a URL is checked (a run with a database needs it anyway).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

# libpq's parameters with a fixed set of values (libpq 16/17), which its parser does not check
ENUMERATED = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
}
INTEGERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")
_PORT = re.compile(r"[0-9]{1,5}")
_WORD = re.compile(r"\w")


def parse_database_url(text: str) -> str:
    """A PostgreSQL URL that libpq will accept (it may still fail to connect).

    Args:
        text: the setting's value.

    Returns:
        The URL, stripped.

    Raises:
        ValueError: naming what is wrong, never quoting a password.
    """
    url = text.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ValueError("must look like postgresql://user:password@host:port/dbname")
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"is not accepted by libpq: {_without_secrets(reason, url)}") from None
    for name, allowed in ENUMERATED.items():
        if name in params and params[name] not in allowed:
            raise ValueError(f"{name}={_without_secrets(str(params[name]), url)!r} is not one of {', '.join(allowed)}")
    for name in INTEGERS:
        if name in params and not _INTEGER.fullmatch(str(params[name])):
            raise ValueError(f"{name} must be an integer")
    _check_ports(str(params.get("port") or ""))
    return url


def _check_ports(ports: str) -> None:
    """libpq's port list, one per host of a multi-host URL (``h1:1,h2:5432`` gives ``1,5432``; an
    empty entry is the default port): each a TCP port, 1-65535. Port 0 would be a connection
    failure at every attempt (exit 75, retried), not the settings error it is."""
    for port in ports.split(","):
        if port.strip() and not (_PORT.fullmatch(port.strip()) and 1 <= int(port) <= 65535):
            raise ValueError(f"has an invalid port {port.strip()!r} (a port is 1-65535)")


def _without_secrets(text: str, url: str) -> str:
    return mask_tokens(text, url_secrets(url))


def mask_tokens(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each occurrence of a secret that stands as a token of its own replaced by ``***``.

    A secret is a token where it is not glued to letters, digits or ``_`` (nor, for a digit, by a
    dot to another digit): in a URL's userinfo (``:pw@``), after ``password=``, in a JSON value or a
    quoted string, in a file name (``clip-<pw>.mp4``), or as a word. So the password ``1`` is hidden
    in ``app:1@db``, ``password=1`` and ``is 1.``, but leaves ``video_id 1021``, ``127.0.0.1`` and
    ``postgresql`` whole, where replacing substrings printed ``***02***``. Each secret is also
    matched as JSON and ``repr`` escape it (a quote or a backslash in a password).
    """
    pattern = _token_pattern(frozenset(secrets))
    return pattern.sub("***", text) if pattern is not None else text


@functools.lru_cache(maxsize=16)
def _token_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    spellings = {
        spelling
        for secret in secrets
        if secret
        for spelling in (secret, json.dumps(secret)[1:-1], repr(secret)[1:-1])
        if spelling
    }
    if not spellings:
        return None

    def token(spelling: str) -> str:
        # a boundary is needed only where the secret's own edge is a word character; a dot between
        # digits glues too (an address 127.0.0.1, a decimal 1.5), but not after a word: clip-<pw>.mp4
        left = (r"(?<!\w)" + (r"(?<!\d\.)" if spelling[0].isdigit() else "")) if _WORD.match(spelling[0]) else ""
        right = (r"(?!\w)" + (r"(?!\.\d)" if spelling[-1].isdigit() else "")) if _WORD.match(spelling[-1]) else ""
        return left + re.escape(spelling) + right

    return re.compile("|".join(token(s) for s in sorted(spellings, key=len, reverse=True)))


SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})  # libpq's parameters that hold secrets


def url_secrets(url: str) -> set[str]:
    """The secrets a URL holds (userinfo password, ``password``/``sslpassword`` query values),
    each as written and percent-decoded; works on URLs that are otherwise malformed too."""
    try:
        parts = urlsplit(url)
        raw = [parts.netloc.rpartition("@")[0].partition(":")[2]] if "@" in parts.netloc else []
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return set()
    raw += [
        value
        for part in parts.query.split("&")
        for key, _, value in [part.partition("=")]
        if unquote(key).lower() in SECRET_QUERY_KEYS
    ]
    decoded = [value for key, value in pairs if key.lower() in SECRET_QUERY_KEYS]
    found = {*raw, *decoded, *(unquote(value) for value in raw), *(quote(value, safe="") for value in decoded)}
    return {value for value in found if value}


def mask_url(url: str | None) -> str | None:
    """The URL with its userinfo password and its ``password``/``sslpassword`` values as ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host: nothing of it is shown
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{host}"
    query = (
        "&".join(
            f"{key}=***" if unquote(key).lower() in SECRET_QUERY_KEYS else f"{key}{sep}{value}"
            for key, sep, value in (part.partition("=") for part in parts.query.split("&"))
        )
        if parts.query
        else ""
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
