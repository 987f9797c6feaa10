"""Identifiers that come from outside: video ids and SQL table or column names.

One validator each, used by every entry point (the worker's settings, the SQS dispatcher,
backfill manifests and ``analyzer submit``), so that they all accept and refuse the same values.
This module imports nothing heavy: the dispatcher's Lambda zip and the worker's settings load it.

Video ids are at most ``MAX_VIDEO_ID`` = 2**31 - 1: the worker's per-video lock is
``pg_try_advisory_lock(<namespace int4>, <video_id int4>)``, so a larger id cannot be locked and a
job submitted for it could never run; refusing it where it enters keeps the video from being
queued for a job that is bound to fail.
"""

from __future__ import annotations

import re
from typing import Any

MAX_VIDEO_ID = 2**31 - 1  # the advisory lock's second key is a PostgreSQL int4
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also accepts '١٢' and '²'
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")  # PostgreSQL: 63 bytes, no quoting needed


def parse_video_id(value: Any) -> int:
    """A video id from an int (not a bool) or a string of ASCII digits (surrounding blanks ignored).

    Args:
        value: a JSON number, or the text of an environment variable, flag or message field.

    Returns:
        The id, between 1 and ``MAX_VIDEO_ID``.

    Raises:
        ValueError: with a message saying what is wrong, for the caller to prefix with the source.
    """
    if isinstance(value, str):
        text = value.strip(" \t\r\n")
        if not _DIGITS.fullmatch(text):
            raise ValueError(f"must be a positive integer of ASCII digits, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a positive integer, got {value!r}")
    if not 1 <= value <= MAX_VIDEO_ID:
        raise ValueError(f"must be a positive integer between 1 and {MAX_VIDEO_ID}, got {value}")
    return value


def parse_table_name(text: str) -> str:
    """``table`` or ``schema.table``, each part a plain SQL identifier.

    Raises:
        ValueError: when a part is empty, too long, or holds anything but letters, digits, ``_``, ``$``.
    """
    parts = text.strip().split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(f"must be table or schema.table of letters, digits and _, got {text!r}")
    return text.strip()


def parse_column_name(text: str) -> str:
    """A plain SQL identifier (letters, digits, ``_``, ``$``; not starting with a digit).

    Raises:
        ValueError: otherwise.
    """
    if not _IDENTIFIER.fullmatch(text.strip()):
        raise ValueError(f"must be a column name of letters, digits and _, got {text!r}")
    return text.strip()
