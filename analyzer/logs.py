"""Logging: one JSON object per line in the container, readable text on a terminal.

Every record carries the job's context (video_id, run_id, Batch job id), and any registered
secret (the database password) is scrubbed from the final line, whatever logged it. A URL's
password can sit in its userinfo (``postgresql://app:pw@db/x``) or in its query
(``?password=pw``, libpq's form); ``register_url_secrets`` registers both, raw and
percent-decoded (``analyzer.conninfo`` finds them).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from analyzer.conninfo import mask_tokens, mask_url, url_secrets

CONTEXT: dict[str, Any] = {}  # video_id, run_id, batch_job_id: added to every record
_SECRETS: set[str] = set()
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s"
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE", re.IGNORECASE)


def register_secret(secret: str | None) -> None:
    """Never print this string (e.g. the database password)."""
    if secret:
        _SECRETS.add(secret)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` where it stands as a token
    (``conninfo.mask_tokens``: a short password never eats the digits of a video id)."""
    return mask_tokens(text, _SECRETS)


def register_url_secrets(url: str | None) -> None:
    """Never print the secrets ``url`` holds (see ``url_secrets``)."""
    for secret in url_secrets(url or ""):
        register_secret(secret)


def register_environment_secrets(env: Mapping[str, str]) -> None:
    """Never print a secret the environment holds: the passwords of ``DATABASE_URL`` and
    ``S3_ENDPOINT_URL``, and the value of any variable named like a secret
    (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``*PASSWORD*``; values of 8 characters
    or more, so that a flag such as ``true`` is not scrubbed from every line)."""
    for name in ("DATABASE_URL", "S3_ENDPOINT_URL"):
        register_url_secrets(env.get(name))
    for name, value in env.items():
        if _SECRET_NAME.search(name) and len(value) >= 8:
            register_secret(value)


def mask_secret_value(name: str, value: str) -> str:
    """A setting's value as it may be printed: ``***`` when its name says it is a secret
    (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``...), a URL with its passwords masked, else itself."""
    if _SECRET_NAME.search(name):
        return "***"
    return mask_url(value) if "://" in value else value


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in CONTEXT.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        shown = {k: v for k, v in CONTEXT.items() if v is not None}
        record.context = " [" + " ".join(f"{k}={v}" for k, v in shown.items()) + "]" if shown else ""
        return True


class _ScrubbingJson(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _ScrubbingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure(log_format: str = "auto", level: int = logging.INFO) -> None:
    """Send the package's logs to stderr as JSON lines or text (``auto``: text on a terminal)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if use_json:
        handler.setFormatter(
            _ScrubbingJson(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                reserved_attrs=[*_RESERVED, "context"],
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(_ScrubbingText(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_RESERVED = [
    "args",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "msg",
    "pathname",
    "process",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
]
