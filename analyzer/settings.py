"""The job's settings: one frozen dataclass read from CLI flags, then the environment, then defaults.

Every setting has an environment variable (what AWS Batch passes) and a CLI flag (for local
runs); a flag wins over the environment. An invalid or missing value raises SettingsError
with one line naming the setting. This module stays light (no torch, no boto3): it runs
before the duplicate-run check, which must cost almost nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from analyzer.conninfo import parse_database_url
from analyzer.errors import SettingsError
from analyzer.ids import parse_column_name, parse_table_name, parse_video_id
from analyzer.source.s3 import check_bucket, check_key, is_s3_uri, split_s3_uri
from models.weights import CLASSIFIERS, DEFAULT_CLASSIFIER, DETECTORS  # light: no torch at import

# Least gender_score (percent) that is stored; below it gender and gender_score are NULL. Chosen by
# scripts/fit_pooling.py on appearances (the synthetic FairFace tracks' fit half and the real clips of
# tests/data/video_set) as the least score whose answered appearances are >= 95 % right (docs/quality.md).
DEFAULT_MIN_GENDER_SCORE = 85.0
DEFAULT_MIN_FACE_PX = 40.0  # px; smaller faces are not judged (analyzer.analysis.tracking says why)

DEFAULT_MODEL_DIR = "weights"


@dataclass(frozen=True)
class Spec:
    """How one setting is read: its field, flag, environment variables and parser."""

    field: str
    flag: str
    envs: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str = ""
    required: bool = False

    @property
    def default(self) -> Any:
        """The value when neither flag nor variable is given: ``Settings``'s default, the one place."""
        default = next(f.default for f in dataclasses.fields(Settings) if f.name == self.field)
        return None if default is dataclasses.MISSING else default


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise ValueError("must be greater than 0")
    return value


def _bucket(text: str) -> str:
    return check_bucket(text.strip())


def _percent(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"must be a percentage 0-100, got {text!r}")
    return value


def _http_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s):// URL")
    return text.strip()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


def _decoder(text: str) -> str:
    """A decoder name; ``nvdec`` only where PyNvVideoCodec is installed (else it would fail after the
    download, as a bug). Whether it loads and CUDA is there is checked when the reader opens."""
    value = _choice("auto", "opencv", "pyav", "nvdec")(text)
    if value == "nvdec" and importlib.util.find_spec("PyNvVideoCodec") is None:
        raise ValueError("nvdec needs PyNvVideoCodec, which is not installed (extra nvdec); use auto, opencv or pyav")
    return value


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


SPECS: tuple[Spec, ...] = (
    Spec(
        "video_key",
        "input",
        ("VideoKey", "VIDEO_KEY"),
        _non_empty,
        required=True,
        help="S3 key (with S3_BUCKET), s3://bucket/key URI, or a local file path",
    ),
    Spec(
        "video_id",
        "--video-id",
        ("video_id", "VIDEO_ID"),
        parse_video_id,
        required=True,
        help="positive integer id of the video (never derived from the key)",
    ),
    Spec("s3_bucket", "--bucket", ("S3_BUCKET",), _bucket, help="bucket of a bare S3 key"),
    Spec(
        "s3_endpoint_url",
        "--s3-endpoint-url",
        ("S3_ENDPOINT_URL",),
        _http_url,
        help="endpoint of an S3-compatible server",
    ),
    Spec(
        "database_url",
        "--database-url",
        ("DATABASE_URL",),
        parse_database_url,
        help="PostgreSQL URL; without it events go to JSON and a local file lock guards duplicates",
    ),
    Spec("batch_job_id", "--job-id", ("AWS_BATCH_JOB_ID",), _non_empty, help="AWS Batch job id"),
    Spec("batch_attempt", "--job-attempt", ("AWS_BATCH_JOB_ATTEMPT",), _positive_int, help="AWS Batch attempt number"),
    Spec("batch_queue", "--job-queue", ("AWS_BATCH_JQ_NAME",), _non_empty, help="AWS Batch job queue"),
    Spec(
        "model_dir",
        "--model-dir",
        ("ANALYZER_MODEL_DIR",),
        Path,
        help="folder holding the model weights",
    ),
    Spec(
        "sample_fps",
        "--sample-fps",
        ("ANALYZER_SAMPLE_FPS",),
        _non_negative_float,
        help="frames analysed per second of video; 0 = every frame",
    ),
    Spec("batch_size", "--batch-size", ("ANALYZER_BATCH_SIZE",), _positive_int, help="frames per GPU batch"),
    Spec("detector", "--detector", ("ANALYZER_DETECTOR",), _choice(*DETECTORS), help="face detector"),
    Spec(
        "classifier",
        "--classifier",
        ("ANALYZER_CLASSIFIER",),
        _choice(*CLASSIFIERS),
        help="gender-age model: cydral (public domain) or insightface (non-commercial use only)",
    ),
    Spec(
        "min_gender_score",
        "--min-gender-score",
        ("ANALYZER_MIN_GENDER_SCORE",),
        _percent,
        help="least gender_score (percent) reported; below it gender is NULL",
    ),
    Spec(
        "device",
        "--device",
        ("ANALYZER_DEVICE",),
        _non_empty,
        help="torch device: auto (CUDA when present), cpu, cuda, cuda:N",
    ),
    Spec(
        "precision",
        "--precision",
        ("ANALYZER_PRECISION",),
        _choice("fp32", "fp16"),
        help="network precision on CUDA; fp16 was 9 percent faster on an H200 (Cydral) and its parity is unmeasured",
    ),
    Spec(
        "decoder",
        "--decoder",
        ("ANALYZER_DECODER",),
        _decoder,
        help="video decoding backend: auto, opencv, pyav, nvdec (needs PyNvVideoCodec)",
    ),
    Spec(
        "max_pixels",
        "--max-pixels",
        ("ANALYZER_MAX_PIXELS",),
        _positive_int,
        help="refuse videos with more pixels per frame",
    ),
    Spec(
        "max_duration_s",
        "--max-duration",
        ("ANALYZER_MAX_DURATION_S",),
        _non_negative_float,
        help="refuse videos longer than this many seconds",
    ),
    Spec(
        "min_face_px",
        "--min-face-px",
        ("ANALYZER_MIN_FACE_PX",),
        _non_negative_float,
        help="smallest face (px) whose gender and age are judged",
    ),
    Spec(
        "min_sharpness",
        "--min-sharpness",
        ("ANALYZER_MIN_SHARPNESS",),
        _non_negative_float,
        help="least sharpness of a face whose gender and age are judged (tracker default if unset)",
    ),
    Spec(
        "gpu_memory_mb",
        "--gpu-memory-mb",
        ("ANALYZER_GPU_MEMORY_MB",),
        _positive_int,
        help="cap on this process's CUDA memory (MiB); exceeding it is a retryable CUDA OOM",
    ),
    Spec(
        "host_buffer_mb",
        "--host-buffer-mb",
        ("ANALYZER_HOST_BUFFER_MB",),
        _positive_int,
        help="cap on decoded frames held in host memory (MiB); lowers the batch size for large frames",
    ),
    Spec(
        "videos_table",
        "--videos-table",
        ("VIDEOS_TABLE",),
        parse_table_name,
        help="table ([schema.]name, case-sensitive) that must hold the video's row and key; unset: "
        "videos, checked when it exists",
    ),
    Spec("videos_id_column", "--videos-id-column", ("VIDEOS_ID_COLUMN",), parse_column_name),
    Spec("videos_key_column", "--videos-key-column", ("VIDEOS_KEY_COLUMN",), parse_column_name),
    Spec("json_path", "--json", ("ANALYZER_JSON",), Path, help="also write the events as JSON to FILE ('-' = stdout)"),
    Spec(
        "contact_sheet",
        "--contact-sheet",
        ("ANALYZER_CONTACT_SHEET",),
        Path,
        help="write a PNG grid of each event's best face",
    ),
    Spec(
        "force",
        "--force",
        ("ANALYZER_FORCE",),
        _flag,
        help="re-analyse even if this input and model version already succeeded",
    ),
    Spec(
        "lock_dir",
        "--lock-dir",
        ("ANALYZER_LOCK_DIR",),
        Path,
        help="folder of the local duplicate-run file locks (runs without DATABASE_URL)",
    ),
    Spec(
        "heartbeat_interval",
        "--heartbeat-interval",
        ("ANALYZER_HEARTBEAT_INTERVAL",),
        _positive_float,
        help="seconds between heartbeats and lock checks",
    ),
    Spec(
        "log_format",
        "--log-format",
        ("ANALYZER_LOG_FORMAT",),
        _choice("auto", "json", "text"),
        help="json: one object per line; text: readable; auto: text on a terminal",
    ),
)


@dataclass(frozen=True)
class Settings:
    video_key: str
    video_id: int
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    database_url: str | None = None
    batch_job_id: str | None = None
    batch_attempt: int | None = None
    batch_queue: str | None = None
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    sample_fps: float = 5.0
    batch_size: int = 32
    detector: str = "retinaface"
    classifier: str = DEFAULT_CLASSIFIER
    min_gender_score: float = DEFAULT_MIN_GENDER_SCORE
    device: str = "auto"
    precision: str = "fp32"
    decoder: str = "auto"
    max_pixels: int = 3840 * 2160
    max_duration_s: float = 4 * 3600.0
    min_face_px: float = DEFAULT_MIN_FACE_PX
    min_sharpness: float | None = None
    gpu_memory_mb: int = 8192
    host_buffer_mb: int = 1024
    videos_table: str | None = None  # None: the runner's default table, checked only when it exists
    videos_id_column: str = "id"
    videos_key_column: str = "s3_key"
    json_path: Path | None = None
    contact_sheet: Path | None = None
    force: bool = False
    lock_dir: Path = Path(tempfile.gettempdir())
    heartbeat_interval: float = 5.0
    log_format: str = "auto"

    @property
    def is_s3(self) -> bool:
        """An s3:// URI, or a bare key with a bucket; anything else is a local path."""
        return is_s3_uri(self.video_key) or self.s3_bucket is not None

    @property
    def s3_location(self) -> tuple[str, str]:
        """(bucket, key) of an S3 input."""
        if is_s3_uri(self.video_key):
            return split_s3_uri(self.video_key)
        return str(self.s3_bucket), self.video_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, each naming its environment variable; values stay raw strings."""
    for spec in SPECS:
        env = " / ".join(f"${e}" for e in spec.envs)
        default = f"; default {spec.default}" if spec.default not in (None, False) else ""
        help_text = f"{spec.help} [{env}{default}]".strip()
        if spec.flag == "input":
            parser.add_argument("input", nargs="?", help=help_text)
        elif spec.parse is _flag:
            parser.add_argument(spec.flag, dest=spec.field, action="store_const", const="true", help=help_text)
        else:
            parser.add_argument(spec.flag, dest=spec.field, metavar=spec.field.upper(), help=help_text)


def _raw_value(spec: Spec, args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str | None, str]:
    """The raw text of a setting and where it came from (flag or variable name)."""
    attr = "input" if spec.flag == "input" else spec.field
    flag_value = getattr(args, attr, None)
    if flag_value is not None:
        return flag_value, spec.flag if spec.flag != "input" else "the input argument"
    given = [name for name in spec.envs if name in env]
    if len({env[name].strip() for name in given}) > 1:  # video_id=52 beside VIDEO_ID=53: neither is sure
        values = " and ".join(f"{name}={env[name]!r}" for name in given)
        raise SettingsError(f"conflicting settings: {values} disagree; set one of them")
    if given:
        return env[given[0]], given[0]
    return None, " / ".join(spec.envs)


def resolve_one(spec: Spec, args: argparse.Namespace, env: Mapping[str, str], required: bool = False) -> Any:
    """One setting's parsed value; raises SettingsError naming the flag or variable."""
    raw, source = _raw_value(spec, args, env)
    if raw is None:
        if spec.required or required:
            raise SettingsError(f"missing setting {source} ({spec.help})")
        return spec.default
    try:
        return spec.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"invalid setting {source}: {exc}") from None


def spec(field: str) -> Spec:
    return next(s for s in SPECS if s.field == field)


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags and the environment; raises SettingsError naming the setting."""
    env = os.environ if env is None else env
    settings = Settings(**{s.field: resolve_one(s, args, env) for s in SPECS})
    try:
        if is_s3_uri(settings.video_key):
            split_s3_uri(settings.video_key)
        elif settings.s3_bucket is not None:
            check_key(settings.video_key)
    except (SettingsError, ValueError) as exc:
        raise SettingsError(f"invalid setting VideoKey: {exc} (expected s3://bucket/key or a key)") from None
    return settings


def check_writable(s: Settings, *, lock_dir: bool) -> None:
    """Try now each folder the run will write in, so that an unusable one is exit 2 before the lock
    and the analysis, not an internal error after an hour of GPU time: the folders of ``--json``
    and ``--contact-sheet`` (created when missing, as their writers would) and, when ``lock_dir``
    (a run without a database), the lock folder. The folder is tried with a temporary file, not
    ``os.access``: it tells a read-only mount or a path under a regular file apart for root too.

    Raises:
        SettingsError: naming the setting and why its folder cannot be written.
    """
    targets: list[tuple[str, Path, Path | None]] = []
    if s.json_path is not None and str(s.json_path) != "-":
        targets.append(("json_path", s.json_path.parent, s.json_path))
    if s.contact_sheet is not None:
        targets.append(("contact_sheet", s.contact_sheet.parent, s.contact_sheet))
    if lock_dir:
        targets.append(("lock_dir", s.lock_dir, None))
    for field, folder, file in targets:
        where = " / ".join((*spec(field).envs, spec(field).flag))
        if file is not None and file.is_dir():
            raise SettingsError(f"invalid setting {where}: {file} is a directory")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise SettingsError(f"invalid setting {where}: cannot write in {folder} ({exc.strerror or exc})") from None
