"""The full pipeline against its floor (decoding alone) and against a per-frame baseline.

For each (video, decoder), one test measures, in the same run and on the same video:

- ``decode``: the FrameBatcher alone at the default 5 samples/s (the floor: the worker cannot
  be faster than reading the frames);
- ``pipeline``: ``analyze_video`` (prefetch thread, batched detection and classification, tracker);
- ``per_frame``: the same models called one frame at a time, decoding in the same thread, no
  prefetch (what a naive worker does);

and prints pipeline/decode and pipeline/per-frame throughput ratios, the real-time factor, and
peak host RSS / GPU memory. ``ceiling_over_per_frame`` is the best pipeline/per-frame ratio the
decoder allows (the per-frame baseline's time per frame over decoding's alone): the pipeline can
at most reach the decoding floor, so where decoding costs about as much per frame as the models
at batch 1, no batching gets near 10x. On CUDA the videos are the >= 60-s ones; on CPU 10-s cuts
keep the run short (``ANALYZER_BENCH_SECONDS`` overrides).

Run:  pytest benchmarks/test_bench_pipeline.py
      taskset -c 0-3 pytest benchmarks/test_bench_pipeline.py    (4 CPUs, as on a g5.xlarge)
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import cv2
import pytest
import torch

from analyzer.analysis.pipeline import (
    StageClock,
    analyze_video,
    frame_faces,
    leave_cpus_to_the_decoder,
    tracker_settings,
)
from analyzer.analysis.tracking import Tracker
from analyzer.settings import Settings
from analyzer.video.batcher import FrameBatcher
from analyzer.video.probe import probe
from analyzer.video.readers.nvdec import unavailable_reason
from analyzer.video.sampling import TimestampSampler
from benchmarks.conftest import bench_video
from models.face_analyzer import FaceAnalyzer
from tests.conftest import fetched_models_dir

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = fetched_models_dir()  # ../shared/models as `analyzer models fetch` installs it (Cydral converted)
CUDA = torch.cuda.is_available()
SECONDS = float(os.environ.get("ANALYZER_BENCH_SECONDS", "60" if CUDA else "10"))
RESULTS: dict[str, list[str]] = {}
# ANALYZER_BENCH_PROFILE=DIR: also run the pipeline once under torch.profiler and write its op tables there
PROFILE_DIR = Path(os.environ["ANALYZER_BENCH_PROFILE"]) if os.environ.get("ANALYZER_BENCH_PROFILE") else None


def _settings(path: Path, decoder: str) -> Settings:
    return Settings(video_key=str(path), video_id=1, model_dir=MODELS_DIR, decoder=decoder, log_format="json")


def _decode_only(path: Path, decoder: str) -> tuple[int, float]:
    started = time.perf_counter()
    batcher = FrameBatcher(path, sample_fps=5.0, batch_size=32, backend=decoder)
    sampled = sum(len(batch) for batch in batcher)
    if CUDA:
        torch.cuda.synchronize()
    return sampled, time.perf_counter() - started


def _profile(path: Path, settings: Settings, target: Path) -> None:
    """Where the pipeline's time goes, op by op (CPU and CUDA), for finding overheads."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if CUDA else [])
    with torch.profiler.profile(activities=activities) as profiler:
        analyze_video(path, settings)
    averages = profiler.key_averages()
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=30)]
    if CUDA:
        tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=30))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n\n".join(tables))


def _models_only(path: Path, model: FaceAnalyzer, repeats: int = 5) -> float:
    """Frames/s of the models alone on the video's first batch of 32 sampled frames, in this process
    (next to the pipeline's own models_s it shows whether the models slow down inside the pipeline)."""
    frames = next(iter(FrameBatcher(path, sample_fps=5.0, batch_size=32, backend="opencv"))).frames
    model.analyze(frames)
    started = time.perf_counter()
    for _ in range(repeats):
        model.analyze(frames)
    return repeats * len(frames) / (time.perf_counter() - started)


def _per_frame(path: Path, model: FaceAnalyzer, settings: Settings) -> tuple[int, float, StageClock]:
    """One frame at a time: decode (OpenCV, same thread), analyse a batch of one, track; the
    clock splits the time between the three."""
    info = probe(path)
    tracker = Tracker(tracker_settings(settings), info.width, info.height)
    sampler = TimestampSampler(settings.sample_fps)
    capture = cv2.VideoCapture(str(path))
    clock = StageClock()
    temperature = model.classifier_config.gender_temperature
    started, frames = time.perf_counter(), 0
    while True:
        with clock("decode_s"):
            if not capture.grab():
                break
            timestamp = int(round(capture.get(cv2.CAP_PROP_POS_MSEC)))
            if not sampler.due(timestamp):
                continue
            sampler.keep(timestamp)
            ok, frame = capture.retrieve()
        with clock("models_s"):
            faces = model.analyze(frame[None])
        with clock("track_s"):
            tracker.update(timestamp, frame_faces(faces, temperature), frame=frame)
        frames += 1
    tracker.finish()
    return frames, time.perf_counter() - started, clock


DECODERS = ["opencv", "pyav"] + (["nvdec"] if CUDA else [])


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("video_name", ["1080p", "360p"])
def test_pipeline_vs_decode_and_per_frame(benchmark, bench_summary, video_name, decoder):
    if decoder == "nvdec" and (reason := unavailable_reason("h264")):
        pytest.skip(reason)
    video = bench_video(video_name, SECONDS)
    settings = _settings(video.path, decoder)
    analyze_video(bench_video("360p", 10).path, _settings(video.path, decoder))  # warm-up: CUDA, kernels
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_accumulated_memory_stats()  # gpu_alloc_retries counts from here

    decoded, decode_s = _decode_only(video.path, decoder)
    models_fps = _models_only(video.path, FaceAnalyzer(MODELS_DIR, device="auto"))
    result = benchmark.pedantic(analyze_video, args=(video.path, settings), rounds=1, iterations=1)
    if PROFILE_DIR:
        _profile(video.path, settings, PROFILE_DIR / f"profile-{video_name}-{decoder}.txt")
    pipeline_s = result.stats["wall_s"]
    baseline_frames, baseline_s, baseline_clock = (0, 0.0, StageClock())
    if decoder == "opencv":
        model = FaceAnalyzer(MODELS_DIR, device="auto")
        with leave_cpus_to_the_decoder(model.device):  # the worker's thread policy, as in the pipeline
            baseline_frames, baseline_s, baseline_clock = _per_frame(video.path, model, settings)

    fps = result.frames / pipeline_s
    per_frame_s = baseline_s / baseline_frames if baseline_frames else None
    row = {
        "decode_fps": round(decoded / decode_s, 1),
        "models_only_fps": round(models_fps, 1),
        "pipeline_fps": round(fps, 1),
        "pipeline_over_decode": round(decode_s / pipeline_s, 3),
        "realtime_factor": round(video.duration_s / pipeline_s, 2),
        "per_frame_fps": round(1 / per_frame_s, 2) if per_frame_s else None,
        "pipeline_over_per_frame": round(fps * per_frame_s, 2) if per_frame_s else None,
        # the best pipeline/per-frame ratio possible: the pipeline at the decoding floor
        "ceiling_over_per_frame": round(per_frame_s / (decode_s / decoded), 2) if per_frame_s else None,
        "per_frame_split": baseline_clock.rounded() or None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "events": len(result.events),
        **{
            k: result.stats.get(k)
            for k in (
                "peak_gpu_mib",
                "peak_gpu_reserved_mib",
                "gpu_alloc_retries",
                "wait_decode_s",
                "models_s",
                "track_s",
                "decode_s",
            )
        },
    }
    benchmark.extra_info.update(row)
    device = torch.cuda.get_device_name() if CUDA else "CPU"
    cpus = len(os.sched_getaffinity(0))
    RESULTS[f"{video_name} {decoder}"] = [
        f"{video_name:6} {decoder:7} {device} {cpus} CPUs, {video.duration_s:.0f} s video, 5 samples/s: "
        + ", ".join(f"{k}={v}" for k, v in row.items())
    ]
    bench_summary["pipeline vs decode-only vs per-frame"] = [line for lines in RESULTS.values() for line in lines]
