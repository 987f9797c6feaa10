"""Decode-only throughput of each backend at the default sampling rate (5 frames per second).

Each round runs ``FrameBatcher`` over a whole long video (benchmarks/conftest.py: >= 60 s of
H.264, 1920x1080 and 640x360) with a consumer that only counts frames, so the figure is the
floor the full pipeline can reach. Reported per case, in ``extra_info`` and a table at the end:

- ``covered_fps``: video frames gone through per second (decoded or skipped by the sampler),
- ``sampled_fps``: sampled frames delivered per second,
- ``realtime``: seconds of video per second of wall time.

Run:  pytest benchmarks/test_bench_decode.py
      taskset -c 0-3 pytest benchmarks/test_bench_decode.py    (4 CPUs, as on a g5.xlarge)
Env:  ANALYZER_BENCH_ROUNDS (default 2), ANALYZER_BENCH_THREADS (decoder threads, 0 = library
      default), ANALYZER_BENCH_CACHE (where the long videos are kept).
nvdec runs only with CUDA and PyNvVideoCodec; its CUDA set-up is paid in a warm-up outside the
timing.
"""

from __future__ import annotations

import os

import pytest

from analyzer.video.batcher import FrameBatcher
from analyzer.video.probe import probe
from analyzer.video.readers.base import DecodeStats
from analyzer.video.readers.nvdec import unavailable_reason

SAMPLE_FPS = 5.0
BATCH_SIZE = 32
ROUNDS = int(os.environ.get("ANALYZER_BENCH_ROUNDS", "2"))
THREADS = int(os.environ.get("ANALYZER_BENCH_THREADS", "0"))
BACKENDS = ("opencv", "pyav", "nvdec")
VIDEOS = ("1080p", "360p")
RESULTS: dict[tuple[str, str], dict[str, float]] = {}


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _table() -> list[str]:
    lines = [
        f"{'video':6} {'backend':7} {'covered fps':>11} {'sampled fps':>11} {'x realtime':>10} "
        f"{'decoded':>7} {'skipped':>7}"
    ]
    for (video, backend), row in sorted(RESULTS.items()):
        lines.append(
            f"{video:6} {backend:7} {row['covered_fps']:11.1f} {row['sampled_fps']:11.1f} {row['realtime']:10.2f} "
            f"{row['decoded']:7d} {row['skipped']:7d}"
        )
    for video in VIDEOS:
        base = RESULTS.get((video, "opencv"))
        for backend in ("pyav", "nvdec"):
            other = RESULTS.get((video, backend))
            if base and other:
                lines.append(f"{video}: {backend}/opencv throughput = {other['covered_fps'] / base['covered_fps']:.2f}")
    return lines


@pytest.mark.parametrize("video_name", VIDEOS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_throughput(benchmark, bench_videos, bench_summary, backend: str, video_name: str) -> None:
    if backend == "nvdec" and (reason := unavailable_reason("h264")) is not None:
        pytest.skip(reason)
    video = bench_videos[video_name]
    info = probe(video.path)

    def decode_all() -> DecodeStats:
        batcher = FrameBatcher(
            video.path, backend=backend, sample_fps=SAMPLE_FPS, batch_size=BATCH_SIZE, info=info, threads=THREADS
        )
        delivered = sum(len(batch) for batch in batcher)
        assert delivered == batcher.stats.sampled
        return batcher.stats

    if backend == "nvdec":
        next(iter(FrameBatcher(video.path, backend="nvdec", batch_size=1, info=info)))  # CUDA set-up
    stats = benchmark.pedantic(decode_all, rounds=ROUNDS, iterations=1)
    seconds = benchmark.stats.stats.mean
    assert stats.covered == video.frames and stats.sampled == pytest.approx(video.duration_s * SAMPLE_FPS, abs=2)
    figures = {
        "covered_fps": video.frames / seconds,
        "sampled_fps": stats.sampled / seconds,
        "realtime": video.duration_s / seconds,
        "decoded": stats.decoded,
        "skipped": stats.skipped,
        "sampled": stats.sampled,
        "cpus": _cpus(),
        "threads": THREADS,
    }
    benchmark.extra_info.update(figures)
    RESULTS[(video_name, backend)] = figures
    title = f"decode only, {SAMPLE_FPS:g} samples/s, {_cpus()} CPUs, decoder threads {THREADS or 'default'}"
    bench_summary[title] = _table()
