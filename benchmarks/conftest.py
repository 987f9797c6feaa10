"""Benchmark fixtures: long H.264 videos made from the shared clips.

``bench_videos`` (session) re-encodes ../shared/media clips in a loop with PyAV/libx264 until each
lasts at least ``BENCH_MIN_SECONDS``: "1080p" from facenet_pytorch_walking.mp4 (1920x1080, 25 fps)
and "360p" from short_hamilton_clip.mp4 (640x360, 29.97 fps). x264 preset ``veryfast`` keeps
B-frames and CABAC, like ordinary uploads. The files are cached in ``$ANALYZER_BENCH_CACHE``
(default: ``<tmp>/analyzer-bench-videos``) under names that encode every parameter, so they are
made once per machine (about a minute on 2 cores).

``bench_summary`` (session) is a dict ``title -> lines`` that benchmarks fill; the lines are
printed in the terminal summary, after pytest-benchmark's table (output captured during the tests
would be lost).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from analyzer.analysis.pipeline import cuda_process_defaults

logger = logging.getLogger(__name__)
cuda_process_defaults()  # every benchmark runs under the worker's process-wide CUDA settings

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("ANALYZER_SHARED_DIR", REPO.parent / "shared")) / "media"
BENCH_MIN_SECONDS = 60.0
PRESET = os.environ.get("ANALYZER_BENCH_PRESET", "veryfast")
CRF = 23
SOURCES = {"1080p": "facenet_pytorch_walking.mp4", "360p": "short_hamilton_clip.mp4"}


@dataclass(frozen=True)
class BenchVideo:
    """A long test video: size in pixels, frame rate, frame count, duration in seconds."""

    name: str
    path: Path
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float


def cache_dir() -> Path:
    path = Path(os.environ.get("ANALYZER_BENCH_CACHE") or Path(tempfile.gettempdir()) / "analyzer-bench-videos")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _describe(name: str, path: Path) -> BenchVideo:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = int(stream.frames)
        return BenchVideo(name, path, stream.width, stream.height, fps, frames, frames / fps)


def make_long_video(source: Path, target: Path, min_seconds: float = BENCH_MIN_SECONDS) -> Path:
    """Re-encode ``source`` end to end, as many times as needed to last ``min_seconds``."""
    import av

    with av.open(str(source)) as probe:
        stream = probe.streams.video[0]
        rate = Fraction(stream.average_rate)
        loops = math.ceil(min_seconds * rate / int(stream.frames))
        width, height = stream.width, stream.height
    partial = target.with_suffix(".partial.mp4")
    started = time.monotonic()
    with av.open(str(partial), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": PRESET, "crf": str(CRF)}
        index = 0
        for _ in range(loops):
            with av.open(str(source)) as src:
                for frame in src.decode(video=0):
                    fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
                    fresh.pts, fresh.time_base = index, 1 / rate
                    index += 1
                    for packet in video.encode(fresh):
                        out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    partial.replace(target)
    logger.info("bench video %s: %d frames in %.1f s", target.name, index, time.monotonic() - started)
    return target


def bench_video(name: str, min_seconds: float = BENCH_MIN_SECONDS) -> BenchVideo:
    """The cached long video ``name`` ("1080p" or "360p"), made if missing (shorter ones for CPU runs)."""
    source = MEDIA_DIR / SOURCES[name]
    if not source.is_file():
        pytest.fail(f"test media missing: {source} (set ANALYZER_SHARED_DIR)")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = cache_dir() / f"{name}-{digest}-{int(min_seconds)}s-{PRESET}-crf{CRF}.mp4"
    if not target.is_file():
        make_long_video(source, target, min_seconds)
    return _describe(name, target)


@pytest.fixture(scope="session")
def bench_videos() -> dict[str, BenchVideo]:
    """Both long videos, by name: "1080p" and "360p"."""
    return {name: bench_video(name) for name in SOURCES}


_SUMMARY: dict[str, list[str]] = {}


@pytest.fixture(scope="session")
def bench_summary() -> dict[str, list[str]]:
    """Lines to print at the end of the run, by section title (later writes replace earlier)."""
    return _SUMMARY


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for title, lines in _SUMMARY.items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
