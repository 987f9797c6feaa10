"""analyzer.video on the real clips and on bad inputs: probing, sampling, batching, threading."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from analyzer.errors import ExitCode, InputRejected, Interrupted, UndecodableVideo
from analyzer.video.backend import resolve_backend
from analyzer.video.batcher import FrameBatcher
from analyzer.video.probe import DecodeLimits, probe, pts_to_ms
from analyzer.video.sampling import TimestampSampler
from tests.fixtures.videos import HAMILTON, WALKING, media_path, remux

LIMITS = DecodeLimits(max_pixels=4096 * 2160, max_duration_s=3600.0)
SAMPLE_FPS = 5.0
BACKENDS = ("opencv", "pyav")
CLIPS = {  # name: (width, height, fps, frames) from shared/media/MANIFEST.md
    WALKING: (1920, 1080, 25.0, 105),
    HAMILTON: (640, 360, 29.97, 275),
}


def _decode_all(path: Path, backend: str, **kwargs) -> tuple[list, FrameBatcher]:
    batcher = FrameBatcher(path, backend=backend, **kwargs)
    return list(batcher), batcher


@pytest.fixture(scope="module")
def decoded() -> dict[tuple[str, str], tuple[list, FrameBatcher]]:
    """Each real clip through each CPU backend once, at 5 samples/s in batches of 8."""
    return {
        (clip, backend): _decode_all(media_path(clip), backend, sample_fps=SAMPLE_FPS, batch_size=8)
        for clip in CLIPS
        for backend in BACKENDS
    }


@pytest.mark.parametrize("clip", CLIPS)
def test_probe_reads_the_header(clip: str):
    width, height, fps, frames = CLIPS[clip]
    info = probe(media_path(clip), LIMITS)
    assert (info.width, info.height, info.frame_count, info.rotation, info.codec) == (width, height, frames, 0, "h264")
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert info.duration_ms == pytest.approx(frames / fps * 1000, abs=40)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip", CLIPS)
def test_batches_sample_five_per_second_by_timestamp(decoded, clip: str, backend: str):
    batches, batcher = decoded[clip, backend]
    width, height, fps, frames = CLIPS[clip]
    assert [len(b) for b in batches[:-1]] == [8] * (len(batches) - 1) and 1 <= len(batches[-1]) <= 8
    for batch in batches:
        assert batch.frames.dtype == np.uint8 and batch.frames.shape == (len(batch), height, width, 3)
        assert batch.timestamps_ms.dtype == np.int64 and batch.frame_numbers.dtype == np.int64
    stamps = np.concatenate([b.timestamps_ms for b in batches])
    numbers = np.concatenate([b.frame_numbers for b in batches])
    last_frame_ms = (frames - 1) * 1000 / fps
    assert len(stamps) == int(last_frame_ms // 200) + 1
    assert stamps[0] == 0 and np.all(np.diff(stamps) > 0) and np.all(np.diff(numbers) > 0)
    # One frame per 200 ms slot: the first frame at or after each slot start.
    slots = stamps // 200
    assert np.array_equal(slots, np.arange(len(stamps)))
    assert np.all(stamps - slots * 200 < 1000 / fps)
    assert np.array_equal(numbers, np.round(stamps * fps / 1000).astype(np.int64))
    stats = batcher.stats
    assert stats.sampled == len(stamps) and stats.batches == len(batches) and stats.corrupt == 0
    assert stats.covered == frames and stats.decode_s > 0


@pytest.mark.parametrize("clip", CLIPS)
def test_backends_agree_on_sampled_frames(decoded, clip: str):
    (cv_batches, _), (av_batches, _) = decoded[clip, "opencv"], decoded[clip, "pyav"]
    for cv_batch, av_batch in zip(cv_batches, av_batches, strict=True):
        assert np.array_equal(cv_batch.timestamps_ms, av_batch.timestamps_ms)
        assert np.array_equal(cv_batch.frame_numbers, av_batch.frame_numbers)
        diff = np.abs(cv_batch.frames.astype(np.int16) - av_batch.frames.astype(np.int16))
        assert diff.mean() < 1.0


def test_pyav_skips_unneeded_b_frames(decoded):
    """The walking clip has B-frames: PyAV leaves unneeded ones undecoded, same samples."""
    stats = decoded[WALKING, "pyav"][1].stats
    assert stats.skipped > 20 and stats.decoded + stats.skipped == 105
    assert decoded[HAMILTON, "pyav"][1].stats.skipped == 0  # I/P only: every frame is a reference


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_fps_zero_keeps_every_frame(hamilton_video: Path, backend: str):
    batches, batcher = _decode_all(hamilton_video, backend, sample_fps=0, batch_size=64)
    stamps = np.concatenate([b.timestamps_ms for b in batches])
    assert len(stamps) == 275 and batcher.stats.skipped == 0
    assert np.array_equal(np.concatenate([b.frame_numbers for b in batches]), np.arange(275))
    assert np.all(np.diff(stamps) > 0)


def test_timestamp_sampler_slots():
    sampler = TimestampSampler(5.0)
    kept = []
    for ts in (0, 33, 67, 100, 133, 167, 200, 234, 400, 999, 1000, 1001):
        if sampler.due(ts):
            sampler.keep(ts)
            kept.append(ts)
    assert kept == [0, 200, 400, 999, 1000]
    assert TimestampSampler(0).every_frame
    with pytest.raises(ValueError):
        TimestampSampler(-1)


def test_pts_to_ms_rounds_half_up_exactly():
    from fractions import Fraction

    assert pts_to_ms(10214 + 400 * 18, 10214, Fraction(1, 11988)) == 601  # 600.6 ms
    assert pts_to_ms(2560, 0, Fraction(1, 12800)) == 200
    assert pts_to_ms(1, 0, Fraction(1, 2000)) == 1  # 0.5 ms rounds up


@pytest.mark.parametrize(
    ("fixture", "error", "message"),
    [
        ("zero_byte_video", UndecodableVideo, "empty"),
        ("truncated_video", UndecodableVideo, "not a readable video"),
        ("random_bytes_video", UndecodableVideo, "not a readable video"),
        ("image_as_video", UndecodableVideo, "still image"),
        ("oversized_video", InputRejected, "over the limit"),
    ],
)
def test_bad_inputs_are_refused_by_probe(request, fixture: str, error: type, message: str):
    path = request.getfixturevalue(fixture)
    with pytest.raises(error, match=message) as info:
        probe(path, LIMITS)
    assert path.name in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code in (ExitCode.UNDECODABLE_VIDEO, ExitCode.INPUT_REJECTED)


def test_duration_limit(hamilton_video: Path):
    with pytest.raises(InputRejected, match="9.2 s is over the limit of 5 s"):
        probe(hamilton_video, DecodeLimits(max_pixels=LIMITS.max_pixels, max_duration_s=5))


def test_duration_limit_enforced_while_decoding_when_the_header_is_silent(hamilton_video: Path):
    info = replace(probe(hamilton_video), duration_ms=0)
    limits = DecodeLimits(max_pixels=LIMITS.max_pixels, max_duration_s=2)
    with pytest.raises(InputRejected, match="runs past the limit of 2 s"):
        list(FrameBatcher(hamilton_video, info=info, limits=limits, batch_size=4))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video_gives_one_frame(one_frame_video: Path, backend: str):
    batches, batcher = _decode_all(one_frame_video, backend, batch_size=8)
    assert [b.frames.shape for b in batches] == [(1, 240, 320, 3)]
    assert batches[0].timestamps_ms.tolist() == [0] and batcher.stats.sampled == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_stream_yields_what_decodes(truncated_faststart_video: Path, backend: str):
    batches, batcher = _decode_all(truncated_faststart_video, backend, batch_size=8)
    stamps = np.concatenate([b.timestamps_ms for b in batches])
    assert 0 < len(stamps) < 46 and np.all(np.diff(stamps) > 0)
    assert batcher.stats.covered < 275


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_decodable_frame_is_undecodable(tmp_path: Path, hamilton_video: Path, backend: str):
    """Header intact, media data cut off: the producer finds no frame and says so."""
    full = remux(hamilton_video, tmp_path / "faststart.mp4", faststart=True)
    data = full.read_bytes()
    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(data[: data.index(b"mdat") + 4])
    info = probe(hamilton_video)  # the header's view; probing the cut file would refuse it earlier
    with pytest.raises(UndecodableVideo, match="no decodable video frame"):
        list(FrameBatcher(header_only, backend=backend, info=info))
    with pytest.raises(UndecodableVideo):
        probe(header_only)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_is_honoured(rotated_video: Path, backend: str):
    info = probe(rotated_video)
    assert (info.width, info.height, info.rotation) == (96, 160, 90)
    batches, _ = _decode_all(rotated_video, backend, sample_fps=0, batch_size=4)
    frame = batches[0].frames[0]
    assert frame.shape == (160, 96, 3)
    # The bright block was top-left in the coded picture; a quarter turn clockwise puts it top-right.
    assert frame[:20, -12:].mean() > 200 and frame[:20, :12].mean() < 60
    # OpenCV's own orientation handling agrees.
    capture = cv2.VideoCapture(str(rotated_video))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, reference = capture.read()
    assert ok and np.abs(reference.astype(int) - frame.astype(int)).mean() < 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_event_ends_the_thread_fast(walking_video: Path, backend: str):
    stop = threading.Event()
    batcher = FrameBatcher(walking_video, backend=backend, sample_fps=0, batch_size=2, stop=stop, queue_size=1)
    iterator = iter(batcher)
    next(iterator)
    stop.set()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        for _ in iterator:
            pass
    assert time.monotonic() - started < 1.0
    assert not batcher.running


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_the_loop_stops_the_thread(walking_video: Path, backend: str):
    with FrameBatcher(walking_video, backend=backend, sample_fps=0, batch_size=2, queue_size=1) as batcher:
        for _ in batcher:
            break
        started = time.monotonic()
    assert not batcher.running and time.monotonic() - started < 1.0


def test_queue_bounds_how_far_decoding_runs_ahead(walking_video: Path):
    batcher = FrameBatcher(walking_video, sample_fps=0, batch_size=2, queue_size=2)
    iterator = iter(batcher)
    next(iterator)
    time.sleep(0.5)
    # One consumed, two queued, one waiting to be queued.
    assert batcher.stats.batches <= 4
    batcher.close()
    assert not batcher.running


def test_producer_errors_reach_the_consumer(hamilton_video: Path, tmp_path: Path):
    with pytest.raises(UndecodableVideo, match="cannot open"):
        list(FrameBatcher(tmp_path / "gone.mp4", info=probe(hamilton_video)))


def test_auto_without_cuda_is_opencv(hamilton_video: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: auto may pick nvdec")
    assert resolve_backend("auto", probe(hamilton_video)) == "opencv"
    with pytest.raises(ValueError, match="unknown decoder backend"):
        resolve_backend("ffmpeg-cli", probe(hamilton_video))


def test_messages_name_the_video_as_told(zero_byte_video: Path):
    with pytest.raises(UndecodableVideo, match=r"^video s3://bucket/videos/a\.mp4: the file is empty"):
        probe(zero_byte_video, name="s3://bucket/videos/a.mp4")
