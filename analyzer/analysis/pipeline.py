"""The analysis step: a video file in, one Event per tracked appearance out.

probe (limits checked before decoding) -> FrameBatcher (a producer thread decodes and samples
frames into fixed-size batches) -> FaceAnalyzer (detection, alignment, gender/age for the whole
batch on the device) -> Tracker (faces linked across sampled frames; each track's best face's
chip kept, analyzer.analysis.descriptors) -> people (the appearances linking can use embedded, those
of one person linked and judged together, analyzer.analysis.people) -> Events.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from analyzer.analysis.contact_sheet import write_contact_sheet
from analyzer.analysis.control import Control
from analyzer.analysis.descriptors import BestChips
from analyzer.analysis.people import assign_people
from analyzer.analysis.pooling import POOLINGS
from analyzer.analysis.progress import Progress
from analyzer.analysis.tracking import FrameFaces, Tracker, TrackerSettings
from analyzer.errors import InfrastructureError, UndecodableVideo, model_errors
from analyzer.events import AnalysisResult
from analyzer.settings import Settings
from analyzer.video.batcher import FrameBatch, FrameBatcher
from analyzer.video.probe import DecodeLimits, probe
from models.face_analyzer import FaceAnalyzer, FaceBatch
from models.transfer import PinnedBuffer

log = logging.getLogger(__name__)

# Process-wide CUDA settings, read by torch when CUDA starts or at its first convolution, so set
# before any model loads; an operator's own values win. Both measured on the lent H200 machine:
# - growable allocator segments keep the caching allocator from fragmenting into the
#   --gpu-memory-mb cap (NVDEC's frames took it to 8,096 MiB reserved for 3,396 MiB in use);
# - cuDNN's v8 API prepares every new input shape for 1.3-2.1 s (the first batch, the last one,
#   any new face count); its older API needs none (29 ms for a new shape, against 1,312 ms) for a
#   steady 28-33 ms per 32-frame batch instead of 21-25 ms, far below what decoding takes.
CUDA_PROCESS_ENV = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "TORCH_CUDNN_V8_API_DISABLED": "1"}


def cuda_process_defaults() -> None:
    """Put CUDA_PROCESS_ENV into this process's environment where it is not set already."""
    for name, value in CUDA_PROCESS_ENV.items():
        os.environ.setdefault(name, value)


cuda_process_defaults()

MIN_FRAMES = 2  # fewer is a still image in a video container, not a video
QUEUE_SIZE = 2  # decoded batches waiting for the GPU
CUDA_TORCH_THREADS = 1  # torch CPU threads when the models run on CUDA (see leave_cpus_to_the_decoder)
BATCHES_IN_FLIGHT = QUEUE_SIZE + 2  # queued, being filled by the decoder, being analysed


def fit_batch_size(batch_size: int, width: int, height: int, host_buffer_mb: int) -> int:
    """The batch size, lowered so that the decoded frames in flight fit the host-memory cap."""
    frame_bytes = width * height * 3
    fitting = max(1, host_buffer_mb * 2**20 // (frame_bytes * BATCHES_IN_FLIGHT))
    if fitting < batch_size:
        log.info(
            "batch size %d -> %d: %dx%d frames must fit --host-buffer-mb %d",
            batch_size,
            fitting,
            width,
            height,
            host_buffer_mb,
        )
    return min(batch_size, fitting)


@contextmanager
def leave_cpus_to_the_decoder(device: torch.device) -> Iterator[None]:
    """With the models on CUDA, run torch's own CPU work on one thread (restored on exit).

    torch's OpenMP workers spin after every parallel CPU op (the upload's copy into pinned memory,
    for one) and take the cores the decoder's threads need: on the 2-core machine a decoding thread
    fell from 43 to 19 frames/s beside small torch CPU ops on 2 threads, and to 33 on 1 (the same
    interaction as pytorch/pytorch#33327). On CPU the models need every thread, so nothing changes.
    """
    before = torch.get_num_threads()
    if device.type == "cuda" and before > CUDA_TORCH_THREADS:
        torch.set_num_threads(CUDA_TORCH_THREADS)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def cap_gpu_memory(device: torch.device, limit_mb: int) -> None:
    """Make the caching allocator refuse to grow past ``limit_mb`` (an OOM is then retryable)."""
    if device.type != "cuda":
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit_mb * 2**20 / total), index)


def tracker_settings(settings: Settings) -> TrackerSettings:
    base = TrackerSettings(
        min_face_px=settings.min_face_px,
        min_gender_score=settings.min_gender_score,
        pooling=POOLINGS[settings.classifier],
    )
    return base if settings.min_sharpness is None else replace(base, min_sharpness=settings.min_sharpness)


class StageClock:
    """Seconds spent in each stage of the consumer loop (where the time goes, per run)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        return {stage: round(seconds, 3) for stage, seconds in self.seconds.items()}


def analyze_video(path: Path, settings: Settings, control: Control | None = None) -> AnalysisResult:
    """Analyse one local video file; ``control.check()`` (the worker's signals and lock), if given,
    runs between batches and raises to stop early."""
    started = time.monotonic()
    limits = DecodeLimits(max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s)
    info = probe(path, limits, name=settings.video_key)
    try:
        track_settings = tracker_settings(settings)
        with model_errors():
            faces_model = FaceAnalyzer(
                settings.model_dir,
                detector=settings.detector,
                classifier=settings.classifier,
                device=settings.device,
                half=settings.precision == "fp16",
                embeddings=True,  # loaded; analyze() leaves it to BestChips (its docstring says why)
            )
        cap_gpu_memory(faces_model.device, settings.gpu_memory_mb)
        batch_size = fit_batch_size(settings.batch_size, info.width, info.height, settings.host_buffer_mb)
        tracker = Tracker(track_settings, info.width, info.height)
        progress = Progress(settings.video_id, info.duration_ms, settings.log_format)
        batcher = FrameBatcher(
            path,
            sample_fps=settings.sample_fps,
            batch_size=batch_size,
            queue_size=QUEUE_SIZE,
            backend=settings.decoder,
            info=info,
            limits=limits,
            name=settings.video_key,
        )
        faces, clock, host_frames, chips = 0, StageClock(), PinnedBuffer(), BestChips(track_settings)
        temperature = faces_model.classifier_config.gender_temperature  # as the analyzer's p_male uses it
        with batcher, leave_cpus_to_the_decoder(faces_model.device):
            batches = iter(batcher)
            while True:
                with clock("wait_decode_s"):  # time the GPU side waits for frames
                    batch = next(batches, None)
                if batch is None:
                    break
                with clock("upload_s"):  # the frames' copy to the device (none for NVDEC's, already there)
                    pixels = faces_model.upload(batch.frames)
                with clock("models_s"):
                    found = faces_model.analyze(pixels, embed=False)
                with clock("track_s"):
                    track_ids = _track(tracker, batch, found, temperature, host_frames)
                with clock("chips_s"):
                    chips.after_batch(tracker, faces_model, pixels, batch.timestamps_ms, found, track_ids)
                faces += len(found)
                progress.update(int(batch.timestamps_ms[-1]), len(batch))
                if control is not None:
                    control.check()
        progress.close()
        if batcher.stats.covered < MIN_FRAMES:
            raise UndecodableVideo(
                f"video {settings.video_key}: {batcher.stats.covered} decodable frame(s);"
                f" a video needs at least {MIN_FRAMES}"
            )
        events = tracker.finish()
        with clock("people_s"):
            appearances = chips.describe(events, tracker.appearances, tracker.track_ids, faces_model)
            events = assign_people(events, appearances, track_settings.pooling, track_settings.min_gender_score)
    except torch.cuda.OutOfMemoryError as exc:
        raise InfrastructureError(f"video {settings.video_id}: CUDA out of memory ({exc})".splitlines()[0]) from exc
    if settings.contact_sheet is not None:
        write_contact_sheet(settings.contact_sheet, events, tracker.thumbnails, title=str(settings.video_key))
    wall = time.monotonic() - started
    stats = _summary(batcher, faces_model, info.duration_ms, wall) | clock.rounded()
    return AnalysisResult(
        events=events, frames=batcher.stats.sampled, faces=faces, stats=stats, appearances=appearances
    )


def _track(
    tracker: Tracker, batch: FrameBatch, found: FaceBatch, temperature: float, host_frames: PinnedBuffer
) -> list[list[int]]:
    """Feed one batch's faces to the tracker, frame by frame, with the frame (cut detection, thumbnails);
    the gender log-odds go in calibrated (divided by the classifier's temperature), and frames decoded
    on the GPU come back through ``host_frames``. Returns per frame the track id of each face."""
    frames = batch.frames
    if isinstance(frames, torch.Tensor):  # NVDEC: frames are on the GPU
        frames = host_frames.download(frames).numpy()
    return [
        tracker.update(int(timestamp), frame_faces(found.for_frame(i), temperature), frame=frames[i])
        for i, timestamp in enumerate(batch.timestamps_ms)
    ]


def frame_faces(found: FaceBatch, temperature: float) -> FrameFaces:
    """One frame's faces as the tracker takes them, the gender log-odds calibrated (divided by the
    classifier's temperature)."""
    return FrameFaces.from_arrays(
        found.boxes,
        found.scores,
        found.gender_logit / temperature,
        found.age_probs,
        found.face_px,
        found.sharpness,
        found.landmarks,
    )


def _summary(batcher: FrameBatcher, faces_model: FaceAnalyzer, duration_ms: int, wall: float) -> dict[str, Any]:
    """Figures for the final summary line: throughput, real-time factor, peak memory."""
    stats = batcher.stats.as_dict()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    summary = {
        "decoder": stats["backend"],
        "frames_decoded": stats["decoded"],
        "frames_corrupt": stats["corrupt"],
        "device": str(faces_model.device),
        "model_version": faces_model.model_version,
        "wall_s": round(wall, 3),
        "decode_s": round(stats.get("decode_s", 0.0), 3),
        "frames_per_s": round(stats["sampled"] / wall, 2) if wall > 0 else None,
        "realtime_factor": round(duration_ms / 1000 / wall, 2) if wall > 0 and duration_ms else None,
        "peak_rss_mib": round(rss_kib / 1024 if sys.platform != "darwin" else rss_kib / 2**20, 1),
    }
    if faces_model.device.type == "cuda":
        summary |= _gpu_memory(faces_model.device)
    return summary


def _gpu_memory(device: torch.device) -> dict[str, float | int]:
    """Peak GPU memory in tensors and held by the allocator, and how often the allocator had to
    free its cache and retry (non-zero when the --gpu-memory-mb cap is too tight: each retry
    synchronises the device and returns memory to the driver)."""
    return {
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
        "peak_gpu_reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
        "gpu_alloc_retries": int(torch.cuda.memory_stats(device).get("num_alloc_retries", 0)),
    }
