"""Backfill manifests: which video each AWS Batch array child analyses.

Format: JSON Lines (UTF-8), one object per line, nothing else on the line::

    {"video_id": 84, "key": "videos/2025/12/29/6f1c..._talk.mp4"}
    {"video_id": 85, "key": "s3://other-bucket/videos/2025/12/30/9a2e..._demo.mp4"}

- ``video_id``: a positive integer up to 2**31 - 1 (a JSON number, or a string of ASCII digits;
  ``analyzer.ids``, the validator every entry point uses).
- ``key``: the S3 object key in ``S3_BUCKET``, or an ``s3://bucket/key`` URI, or a local path
  (the same forms the worker's ``VideoKey`` accepts); no control characters.
- No other fields: a typo such as ``"videoid"`` is an error, not an ignored column.

Row ``i`` (0-based) is line ``i + 1``; the array child with ``AWS_BATCH_JOB_ARRAY_INDEX=i`` analyses
it. Blank lines are allowed only at the end of the file, so a row's index is always its line
number minus one. JSON Lines rather than CSV because keys may hold commas and quotes.

A child parses only its own line, so one bad row fails one child, not the whole backfill;
``analyzer submit`` validates every row before it submits anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import AccessDenied, SettingsError
from analyzer.ids import parse_video_id
from analyzer.source.s3 import check_key, default_s3_client, is_s3_uri, s3_errors, split_s3_uri

log = logging.getLogger(__name__)

FIELDS = ("video_id", "key")


@dataclass(frozen=True)
class ManifestRow:
    """One video to analyse: its id in the videos table and where the file is."""

    video_id: int
    key: str

    def as_json(self) -> str:
        return json.dumps({"video_id": self.video_id, "key": self.key}, ensure_ascii=False)


def parse_manifest_line(line: str, where: str) -> ManifestRow:
    """One JSON Lines row -> ManifestRow; ``where`` (e.g. ``"m.jsonl line 3"``) prefixes errors."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{where}: not a JSON object ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise SettingsError(f"{where}: not a JSON object")
    unknown = sorted(set(obj) - set(FIELDS))
    missing = [name for name in FIELDS if name not in obj]
    if unknown or missing:
        raise SettingsError(
            f"{where}: expected fields video_id and key"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
        )
    key = obj["key"]
    if not isinstance(key, str) or not key.strip():
        raise SettingsError(f"{where}: key must be a non-empty string, got {key!r}")
    if is_s3_uri(key):  # a malformed URI, bucket or key fails here, not in an array child
        split_s3_uri(key)
    else:
        try:
            check_key(key)
        except ValueError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    try:
        video_id = parse_video_id(obj["video_id"])
    except ValueError as exc:
        raise SettingsError(f"{where}: video_id {exc}") from None
    return ManifestRow(video_id=video_id, key=key)


def manifest_lines(text: str, source: str) -> list[str]:
    """The row lines of a manifest (trailing blank lines dropped); SettingsError on inner blanks."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise SettingsError(f"{source} line {number}: blank line inside the manifest")
    return lines


def parse_manifest(text: str, source: str = "<manifest>") -> list[ManifestRow]:
    """Every row of a manifest, validated; a video_id listed twice is an error."""
    rows = [
        parse_manifest_line(line, f"{source} line {number}")
        for number, line in enumerate(manifest_lines(text, source), start=1)
    ]
    first_line: dict[int, int] = {}
    for number, row in enumerate(rows, start=1):
        if row.video_id in first_line:
            raise SettingsError(
                f"{source} line {number}: video_id {row.video_id} already listed on line {first_line[row.video_id]}"
            )
        first_line[row.video_id] = number
    return rows


def format_manifest(rows: Iterable[ManifestRow]) -> str:
    """Rows -> JSON Lines text (newline-terminated)."""
    return "".join(row.as_json() + "\n" for row in rows)


def load_manifest_text(source: str, s3_client: Any = None) -> str:
    """The manifest's text from a local path or an ``s3://`` URI, errors translated."""
    if is_s3_uri(source):
        return _load_s3_text(source, s3_client or default_s3_client())
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SettingsError(f"manifest {source} not found") from exc
    except PermissionError as exc:
        raise AccessDenied(f"manifest {source}: permission denied") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(f"manifest {source} is not UTF-8 text") from exc
    except OSError as exc:
        raise SettingsError(f"manifest {source} cannot be read: {exc.strerror}") from exc


def _load_s3_text(uri: str, s3_client: Any) -> str:
    bucket, key = split_s3_uri(uri)
    with s3_errors(f"manifest {uri}", not_found=SettingsError):
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"manifest {uri} is not UTF-8 text") from exc


def read_manifest(source: str, s3_client: Any = None) -> list[ManifestRow]:
    """All rows of the manifest at ``source`` (local path or ``s3://``), validated."""
    return parse_manifest(load_manifest_text(source, s3_client), source)


def read_manifest_row(source: str, index: int, s3_client: Any = None) -> tuple[str, int]:
    """The ``(video_key, video_id)`` of row ``index`` (0-based, = ``AWS_BATCH_JOB_ARRAY_INDEX``).

    Only that row is parsed. Raises SettingsError when the index is out of range or the row is
    malformed, and the load errors of ``load_manifest_text``.
    """
    lines = manifest_lines(load_manifest_text(source, s3_client), source)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(lines):
        raise SettingsError(
            f"manifest {source} has {len(lines)} rows (index 0..{len(lines) - 1}); "
            f"array index {index!r} is out of range"
        )
    row = parse_manifest_line(lines[index], f"{source} line {index + 1}")
    log.info("manifest %s: array index %d -> video %d (%s)", source, index, row.video_id, row.key)
    return row.key, row.video_id
