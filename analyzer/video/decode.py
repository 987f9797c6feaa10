"""Probing and batched, sampled frame decoding.

``probe`` opens a file and refuses it early: no video stream, a still image, unreadable, or over
the resolution/duration limits. ``FrameBatcher`` (built by ``iter_batches``) runs a producer thread
that decodes the video, keeps the first frame of every ``1 / sample_fps`` seconds of presentation
time, and hands fixed-size ``FrameBatch``es to the consumer through a bounded queue, so decoding
overlaps the work done on the previous batch.

Backends (all give the same frames, timestamps and orientation):

- ``opencv``: ``grab()`` every frame, ``retrieve()`` (colour conversion) only the sampled ones.
- ``pyav``: stream timestamps; packets whose frame the sampler will drop are sent with
  ``skip_frame=NONREF``, so non-reference frames (B-frames) that are not needed are never decoded.
- ``nvdec``: NVIDIA's hardware decoder through PyNvVideoCodec (``analyzer.video.nvdec``); batches are
  CUDA tensors.
- ``auto``: ``nvdec`` when CUDA, PyNvVideoCodec and a codec it decodes are present, else ``opencv``.

Timestamps are milliseconds from the stream's start time (``(pts - start_time) * time_base``,
rounded half up), the same value OpenCV's ``CAP_PROP_POS_MSEC`` reports, so every backend samples
the same frames. Rotation metadata is applied by this module for every backend, from ``probe``.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from analyzer.errors import InputNotFound, InputRejected, Interrupted, UndecodableVideo

logger = logging.getLogger(__name__)

Backend = Literal["opencv", "pyav", "nvdec", "auto"]
BACKENDS: tuple[str, ...] = ("opencv", "pyav", "nvdec", "auto")

# Container formats that hold still images, not videos (FFmpeg demuxer names).
STILL_IMAGE_FORMATS = frozenset({"image2", "image2pipe", "webp_pipe", "apng"})
PUT_POLL_S = 0.05  # seconds between checks of the stop flags while the queue is full
GET_POLL_S = 0.05  # seconds between checks of the producer while the queue is empty
JOIN_TIMEOUT_S = 2.0  # seconds to wait for the producer thread when closing
PYAV_LOOKAHEAD_PACKETS = 16  # packets read ahead so B-frames' timestamps are known before deciding
NVDEC_MAX_CPUS = 8  # auto prefers NVDEC up to this many CPUs (see resolve_backend)
LOW_YIELD_WARNING = 0.9  # warn when fewer than this share of the announced frames decoded


@dataclass(frozen=True)
class DecodeLimits:
    """Inputs over these are refused before decoding (``InputRejected``).

    ``max_pixels``: width * height of a frame; ``max_duration_s``: seconds of video.
    """

    max_pixels: int
    max_duration_s: float


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learned about the first video stream.

    ``width``/``height`` are of the frames as delivered, i.e. after rotation; ``rotation`` is the
    clockwise rotation in degrees (0, 90, 180, 270) applied to decoded pictures to display them;
    ``duration_ms`` is 0 when the container does not say (the batcher then enforces the duration
    limit while decoding). ``time_base`` and ``start_pts`` convert stream pts to timestamps.
    """

    width: int
    height: int
    fps: float
    frame_count: int
    duration_ms: int
    rotation: int
    codec: str
    container: str
    time_base: Fraction
    start_pts: int
    colorspace: str  # "bt709" or "bt601": the YUV->RGB matrix the stream asks for
    full_range: bool  # JPEG (0-255) rather than MPEG (16-235) YUV levels

    def timestamp_ms(self, pts: int) -> int:
        """Milliseconds from the stream start for a pts in stream time base, rounded half up."""
        return pts_to_ms(pts, self.start_pts, self.time_base)


@dataclass
class FrameBatch:
    """Sampled frames, in presentation order.

    ``frames``: uint8 N x H x W x 3, BGR; a numpy array, or a CUDA torch tensor for ``nvdec``.
    ``timestamps_ms``: (N,) int64, ms from the stream start; ``frame_numbers``: (N,) int64,
    0-based index of each frame among all frames of the stream (sampled or not).
    """

    frames: Any
    timestamps_ms: np.ndarray
    frame_numbers: np.ndarray

    def __len__(self) -> int:
        return int(self.timestamps_ms.shape[0])


@dataclass
class DecodeStats:
    """Counters the producer updates while it runs; read them during or after iteration.

    ``decoded``: pictures the decoder produced; ``skipped``: frames never decoded because the
    sampler did not need them (PyAV ``skip_frame``); ``corrupt``: frames that failed to decode or
    came out flagged corrupt; ``sampled``: frames handed to the consumer; ``decode_s``: seconds the
    producer spent demuxing/decoding/converting, not waiting on the queue; ``position_ms``: the
    timestamp reached so far.
    """

    backend: str
    decoded: int = 0
    skipped: int = 0
    corrupt: int = 0
    sampled: int = 0
    batches: int = 0
    decode_s: float = 0.0
    position_ms: int = 0

    @property
    def covered(self) -> int:
        """Frames of the video the producer has gone past (decoded, skipped or corrupt)."""
        return self.decoded + self.skipped + self.corrupt

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "decoded": self.decoded,
            "skipped": self.skipped,
            "corrupt": self.corrupt,
            "sampled": self.sampled,
            "batches": self.batches,
            "decode_s": round(self.decode_s, 3),
        }


def pts_to_ms(pts: int, start_pts: int, time_base: Fraction) -> int:
    """``(pts - start_pts) * time_base`` in milliseconds, rounded half up (exact integer maths)."""
    num = (pts - start_pts) * time_base.numerator * 1000
    den = time_base.denominator
    return (2 * num + den) // (2 * den)


def _probe_error(name: str, what: str) -> UndecodableVideo:
    return UndecodableVideo(f"video {name}: {what}")


def probe(path: Path | str, limits: DecodeLimits | None = None, *, name: str | None = None) -> VideoInfo:
    """Read the container header and first picture of ``path``; refuse bad or oversized inputs.

    Raises ``UndecodableVideo`` (empty, unreadable, no video stream, still image, no decodable
    first frame) or ``InputRejected`` (over ``limits``), both before any bulk decoding. ``name``
    is how messages call the video (e.g. its S3 key; default: the file name).
    """
    import av

    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise InputNotFound(f"video {name}: no such file")
    if path.stat().st_size == 0:
        raise _probe_error(name, "the file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise _probe_error(name, f"not a readable video container ({exc.__class__.__name__})") from exc
    with container:
        format_name = container.format.name
        if format_name in STILL_IMAGE_FORMATS or format_name.endswith("_pipe"):
            raise _probe_error(name, f"a still image ({format_name}), not a video")
        if not container.streams.video:
            raise _probe_error(name, f"no video stream in the {format_name} container")
        stream = container.streams.video[0]
        info = _stream_info(name, container, stream)
        if limits is not None:
            check_limits(name, info, limits)
        rotation = _first_frame_rotation(name, container, stream)
    if rotation in (90, 270):
        info = replace(info, width=info.height, height=info.width, rotation=rotation)
    else:
        info = replace(info, rotation=rotation)
    logger.info(
        "video %s: %dx%d %s, %.3f fps, %d frames, %d ms, rotation %d",
        name, info.width, info.height, info.codec, info.fps, info.frame_count,
        info.duration_ms, info.rotation,
    )
    return info


def _stream_info(name: str, container: Any, stream: Any) -> VideoInfo:
    """VideoInfo from the stream header, before rotation is known."""
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise _probe_error(name, f"the {ctx.name} stream has no frame size")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    start_pts = int(stream.start_time) if stream.start_time is not None else 0
    if stream.duration:
        duration_ms = int(round(float(stream.duration * time_base) * 1000))
    elif container.duration:
        duration_ms = int(round(container.duration / 1000))  # AV_TIME_BASE is microseconds
    else:
        duration_ms = 0
    frame_count = int(stream.frames or 0)
    if frame_count == 0 and duration_ms and fps:
        frame_count = int(round(duration_ms * fps / 1000))
    # FFmpeg enums: AVCOL_SPC_BT709 = 1 (unspecified streams convert as BT.601, as swscale does);
    # AVCOL_RANGE_JPEG = 2.
    colorspace = "bt709" if int(ctx.colorspace or 0) == 1 else "bt601"
    full_range = int(ctx.color_range or 0) == 2
    return VideoInfo(
        width=width, height=height, fps=fps, frame_count=frame_count, duration_ms=duration_ms,
        rotation=0, codec=str(ctx.name), container=str(container.format.name),
        time_base=time_base, start_pts=start_pts, colorspace=colorspace, full_range=full_range,
    )


def check_limits(name: str, info: VideoInfo, limits: DecodeLimits) -> None:
    """Raise ``InputRejected`` when the frame size or the duration is over ``limits``."""
    pixels = info.width * info.height
    if pixels > limits.max_pixels:
        raise InputRejected(
            f"video {name}: {info.width}x{info.height} ({pixels} pixels) is over the limit "
            f"of {limits.max_pixels} pixels"
        )
    if info.duration_ms > limits.max_duration_s * 1000:
        raise InputRejected(
            f"video {name}: {info.duration_ms / 1000:.1f} s is over the limit of "
            f"{limits.max_duration_s:g} s"
        )


def _first_frame_rotation(name: str, container: Any, stream: Any) -> int:
    """Decode the first picture (proves the stream decodes) and return its clockwise rotation."""
    import av

    try:
        for frame in container.decode(stream):
            quarter_turns = round((frame.rotation or 0) / 90)  # counter-clockwise, snapped to 90
            return (-quarter_turns * 90) % 360
    except av.error.FFmpegError as exc:
        raise _probe_error(name, f"the first frame does not decode ({exc.__class__.__name__})") from exc
    raise _probe_error(name, "no decodable video frame")


class TimestampSampler:
    """Keeps the first frame of every ``1 / sample_fps`` seconds of presentation time.

    Slot ``k`` covers ``[k / sample_fps, (k + 1) / sample_fps)`` s; ``sample_fps == 0`` keeps every
    frame. The decision depends only on the timestamps, so backends that see the same
    timestamps keep the same frames.
    """

    def __init__(self, sample_fps: float) -> None:
        if sample_fps < 0 or not math.isfinite(sample_fps):
            raise ValueError(f"sample_fps must be >= 0, got {sample_fps}")
        self.rate = Fraction(sample_fps).limit_denominator(1000) if sample_fps > 0 else None
        self._last_slot: int | None = None

    @property
    def every_frame(self) -> bool:
        return self.rate is None

    def slot(self, ts_ms: int) -> int:
        if self.rate is None:
            return ts_ms
        return (ts_ms * self.rate.numerator) // (1000 * self.rate.denominator)

    def due(self, ts_ms: int) -> bool:
        """True when a frame at ``ts_ms`` would be kept (call ``keep`` once it is)."""
        return self.rate is None or self._last_slot is None or self.slot(ts_ms) > self._last_slot

    def keep(self, ts_ms: int) -> None:
        self._last_slot = self.slot(ts_ms)


class StopFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or the batcher's combined flag."""

    def is_set(self) -> bool: ...


class FrameReader(Protocol):
    """One decoding backend: yields the sampled frames, one at a time, then batches them."""

    name: str

    def frames(
        self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag
    ) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(frame_number, timestamp_ms, image)`` for each sampled frame, in order."""
        ...

    def collate(self, images: list[Any]) -> Any:
        """Stack images into one N x H x W x 3 uint8 BGR batch."""
        ...

    def close(self) -> None: ...


def _rotate_bgr(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an H x W x 3 image clockwise by ``rotation`` degrees (0/90/180/270)."""
    import cv2

    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return image if rotation == 0 else cv2.rotate(image, codes[rotation])


class _NumpyCollate:
    """Stacks H x W x 3 numpy images; refuses a picture whose size differs from the probe's."""

    info: VideoInfo

    def collate(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack(images)

    def _fits(self, image: np.ndarray, stats: DecodeStats, number: int) -> bool:
        if image.shape == (self.info.height, self.info.width, 3):
            return True
        stats.corrupt += 1
        logger.warning(
            "frame %d: size %s differs from the stream's %dx%d; skipped",
            number, image.shape, self.info.width, self.info.height,
        )
        return False


class OpenCVReader(_NumpyCollate):
    """``cv2.VideoCapture`` (FFmpeg): ``grab()`` every frame, ``retrieve()`` only sampled ones."""

    name = "opencv"

    def __init__(self, path: Path, info: VideoInfo, *, threads: int = 0, name: str | None = None) -> None:
        import cv2

        self.info = info
        self._name = name or path.name
        params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
        self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
        if not self._cap.isOpened():
            raise UndecodableVideo(f"video {self._name}: OpenCV cannot open it")
        # Rotation is applied here from the probe, the same way for every backend.
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)

    def frames(
        self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        import cv2

        number = -1
        while not stop.is_set() and self._cap.grab():
            number += 1
            stats.decoded += 1
            ts_ms = math.floor(self._cap.get(cv2.CAP_PROP_POS_MSEC) + 0.5)
            stats.position_ms = ts_ms
            if not sampler.due(ts_ms):
                continue
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                stats.corrupt += 1
                stats.decoded -= 1
                continue
            image = _rotate_bgr(image, self.info.rotation)
            if self._fits(image, stats, number):
                sampler.keep(ts_ms)
                yield number, ts_ms, image

    def close(self) -> None:
        self._cap.release()


class _SkipPlanner:
    """Decides, from packet timestamps alone, which packets' frames the sampler may keep.

    A frame is needed when its timestamp is the smallest seen so far in its sampling slot. The
    true first frame of each slot is therefore always decoded; frames decided "needed" too early
    (before a B-frame with a smaller timestamp was read) only cost a decode.
    """

    def __init__(self, sampler: TimestampSampler) -> None:
        self._sampler = sampler
        self._first: dict[int, int] = {}

    def note(self, ts_ms: int) -> None:
        slot = self._sampler.slot(ts_ms)
        if ts_ms < self._first.get(slot, ts_ms + 1):
            self._first[slot] = ts_ms

    def needed(self, ts_ms: int) -> bool:
        return self._first.get(self._sampler.slot(ts_ms)) == ts_ms


class _FrameNumbers:
    """0-based presentation index of a pts among every packet's pts, skipped frames included."""

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._passed = 0

    def note(self, pts: int) -> None:
        heapq.heappush(self._heap, pts)

    def number(self, pts: int) -> int:
        while self._heap and self._heap[0] < pts:
            heapq.heappop(self._heap)
            self._passed += 1
        if self._heap and self._heap[0] == pts:
            heapq.heappop(self._heap)
        number = self._passed
        self._passed += 1
        return number


class PyAVReader(_NumpyCollate):
    """PyAV (FFmpeg): stream timestamps, frame threads, ``skip_frame`` for unneeded frames."""

    name = "pyav"

    def __init__(self, path: Path, info: VideoInfo, *, threads: int = 0, name: str | None = None) -> None:
        import av

        self.info = info
        self._name = name or path.name
        try:
            self._container = av.open(str(path))
        except av.error.FFmpegError as exc:
            raise UndecodableVideo(f"video {self._name}: PyAV cannot open it") from exc
        self._stream = self._container.streams.video[0]
        ctx = self._stream.codec_context
        ctx.thread_type = "AUTO"
        if threads > 0:
            ctx.thread_count = threads

    def frames(
        self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        import av

        planner = None if sampler.every_frame else _SkipPlanner(sampler)
        numbers = _FrameNumbers()
        pending: deque[Any] = deque()
        packets = 0
        try:
            for packet in self._container.demux(self._stream):
                if stop.is_set():
                    return
                if packet.size == 0:
                    continue  # the demuxer's end marker; flushed below
                packets += 1
                if packet.pts is not None:
                    numbers.note(packet.pts)
                    if planner is not None:
                        planner.note(self.info.timestamp_ms(packet.pts))
                pending.append(packet)
                if len(pending) > PYAV_LOOKAHEAD_PACKETS:
                    yield from self._decode(pending.popleft(), planner, numbers, sampler, stats)
            while pending and not stop.is_set():
                yield from self._decode(pending.popleft(), planner, numbers, sampler, stats)
            if not stop.is_set():
                yield from self._decode(None, planner, numbers, sampler, stats)
        except av.error.FFmpegError as exc:
            logger.warning("video %s: demuxing stopped early: %s", self._name, exc)
        finally:
            stats.skipped = max(0, packets - stats.decoded - stats.corrupt)

    def _decode(
        self,
        packet: Any,
        planner: _SkipPlanner | None,
        numbers: _FrameNumbers,
        sampler: TimestampSampler,
        stats: DecodeStats,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        import av

        ctx = self._stream.codec_context
        if packet is not None and planner is not None and packet.pts is not None:
            ctx.skip_frame = "DEFAULT" if planner.needed(self.info.timestamp_ms(packet.pts)) else "NONREF"
        try:
            decoded = ctx.decode(packet)
        except av.error.FFmpegError as exc:
            stats.corrupt += 1
            logger.debug("video %s: packet does not decode: %s", self._name, exc)
            return
        for frame in decoded:
            if frame.pts is None:
                stats.corrupt += 1
                continue
            number = numbers.number(frame.pts)
            ts_ms = self.info.timestamp_ms(frame.pts)
            stats.position_ms = ts_ms
            if frame.is_corrupt:
                stats.corrupt += 1
                continue
            stats.decoded += 1
            if not sampler.due(ts_ms):
                continue
            image = _rotate_bgr(frame.to_ndarray(format="bgr24"), self.info.rotation)
            if self._fits(image, stats, number):
                sampler.keep(ts_ms)
                yield number, ts_ms, image

    def close(self) -> None:
        self._container.close()


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_backend(backend: str, info: VideoInfo) -> str:
    """The concrete backend for ``backend``.

    ``auto`` is ``nvdec`` when it can decode ``info`` and the process has at most
    ``NVDEC_MAX_CPUS`` CPUs, else ``opencv``: one NVDEC session decoded 1080p H.264 at 519 fps on an
    H200 machine, where OpenCV reached 328 fps on 4 CPUs (a g5.xlarge has 4 vCPUs) but 734 on 16.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    from analyzer.video import nvdec

    reason = nvdec.unavailable_reason(info.codec)
    if reason is None and usable_cpus() <= NVDEC_MAX_CPUS:
        return "nvdec"
    reason = reason or f"{usable_cpus()} CPUs decode faster than one NVDEC session"
    logger.info("decoder auto: opencv (%s)", reason)
    return "opencv"


def open_reader(
    backend: str, path: Path, info: VideoInfo, *, threads: int = 0, name: str | None = None
) -> FrameReader:
    """Open the reader for a concrete backend name (``threads`` does not apply to nvdec)."""
    if backend == "opencv":
        return OpenCVReader(path, info, threads=threads, name=name)
    if backend == "pyav":
        return PyAVReader(path, info, threads=threads, name=name)
    if backend == "nvdec":
        from analyzer.video.nvdec import NvdecReader

        return NvdecReader(path, info, name=name)
    raise ValueError(f"unknown decoder backend {backend!r}")


_END = object()


@dataclass
class _Failure:
    exc: BaseException


class FrameBatcher:
    """Iterator of ``FrameBatch`` fed by a decoding thread through a bounded queue.

    Example::

        with FrameBatcher(path, sample_fps=5, batch_size=32) as batches:
            for batch in batches:
                run_models(batch.frames)
        print(batches.stats.as_dict())

    The thread starts on the first ``next()``. Errors in the thread are raised in the consumer.
    Setting ``stop`` (e.g. on SIGTERM) ends decoding within a frame or two and makes the iterator
    raise ``Interrupted``; ``close()`` (or leaving the ``with``/``for``) stops the thread quietly.
    A file that yields no decodable frame raises ``UndecodableVideo``; with ``limits``, a stream
    that runs past ``max_duration_s`` (its header did not say) raises ``InputRejected``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        sample_fps: float = 5.0,
        batch_size: int = 32,
        backend: Backend | str = "opencv",
        stop: threading.Event | None = None,
        queue_size: int = 2,
        info: VideoInfo | None = None,
        limits: DecodeLimits | None = None,
        threads: int = 0,
        name: str | None = None,
    ) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be >= 1")
        self.path = Path(path)
        self.name = name or self.path.name
        self.info = info if info is not None else probe(self.path, limits, name=self.name)
        self.backend = resolve_backend(backend, self.info)
        self.stats = DecodeStats(backend=self.backend)
        self._sampler = TimestampSampler(sample_fps)
        self._batch_size = batch_size
        self._limits = limits
        self._threads = threads
        self._user_stop = stop if stop is not None else threading.Event()
        self._closed = threading.Event()
        self._halt = _AnyEvent(self._user_stop, self._closed)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._done = False

    @property
    def running(self) -> bool:
        """True while the decoding thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FrameBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[FrameBatch]:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                yield batch
        finally:
            self.close()

    def _next_batch(self) -> FrameBatch | None:
        if self._done:
            return None
        if self._user_stop.is_set():
            self._done = True
            raise Interrupted(f"video {self.name}: decoding stopped on request")
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="frame-decoder", daemon=True)
            self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=GET_POLL_S)
            except queue.Empty:
                if self._user_stop.is_set():
                    self._done = True
                    raise Interrupted(f"video {self.name}: decoding stopped on request") from None
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    raise RuntimeError("the decoding thread ended without a result") from None
                continue
            if item is _END:
                self._done = True
                return None
            if isinstance(item, _Failure):
                self._done = True
                raise item.exc
            return item

    def close(self) -> None:
        """Stop the producer thread and wait for it (at most ``JOIN_TIMEOUT_S``)."""
        self._closed.set()
        self._done = True
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while thread.is_alive() and time.monotonic() < deadline:
            self._drain()
            thread.join(timeout=PUT_POLL_S)
        if thread.is_alive():
            logger.warning("video %s: decoding thread did not stop in %.1f s", self.name, JOIN_TIMEOUT_S)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    # Producer side ----------------------------------------------------------------------------

    def _produce(self) -> None:
        reader: FrameReader | None = None
        try:
            reader = open_reader(self.backend, self.path, self.info, threads=self._threads, name=self.name)
            self._fill_batches(reader)
            if self._halt.is_set():
                return
            if self.stats.sampled == 0:
                raise UndecodableVideo(f"video {self.name}: no decodable video frame")
            self._warn_if_short()
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            if not self._halt.is_set():
                self._put(_Failure(exc))
        finally:
            if reader is not None:
                reader.close()

    def _fill_batches(self, reader: FrameReader) -> None:
        numbers: list[int] = []
        stamps: list[int] = []
        images: list[Any] = []
        frames = reader.frames(self._sampler, self.stats, self._halt)
        max_ms = self._limits.max_duration_s * 1000 if self._limits is not None else math.inf
        started = time.perf_counter()
        for number, ts_ms, image in frames:
            if ts_ms > max_ms:
                raise InputRejected(
                    f"video {self.name}: runs past the limit of {self._limits.max_duration_s:g} s"
                )
            numbers.append(number)
            stamps.append(ts_ms)
            images.append(image)
            self.stats.sampled += 1
            if len(images) == self._batch_size:
                batch = self._make_batch(reader, numbers, stamps, images)
                self.stats.decode_s += time.perf_counter() - started
                if not self._put(batch):
                    return
                started = time.perf_counter()
                numbers, stamps, images = [], [], []
        if images and not self._halt.is_set():
            batch = self._make_batch(reader, numbers, stamps, images)
            self.stats.decode_s += time.perf_counter() - started
            self._put(batch)
        else:
            self.stats.decode_s += time.perf_counter() - started

    def _make_batch(
        self, reader: FrameReader, numbers: list[int], stamps: list[int], images: list[Any]
    ) -> FrameBatch:
        self.stats.batches += 1
        return FrameBatch(
            frames=reader.collate(images),
            timestamps_ms=np.asarray(stamps, dtype=np.int64),
            frame_numbers=np.asarray(numbers, dtype=np.int64),
        )

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting while the queue is full; False if halted meanwhile."""
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _warn_if_short(self) -> None:
        expected = self.info.frame_count
        if expected and self.stats.covered < LOW_YIELD_WARNING * expected:
            logger.warning(
                "video %s: only %d of the %d announced frames were read (truncated or damaged?)",
                self.name, self.stats.covered, expected,
            )


class _AnyEvent:
    """Read-only view that is set when any of its events is set (what readers poll)."""

    def __init__(self, *events: threading.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


def iter_batches(
    path: Path | str,
    *,
    sample_fps: float = 5.0,
    batch_size: int = 32,
    backend: Backend | str = "opencv",
    stop: threading.Event | None = None,
    queue_size: int = 2,
    info: VideoInfo | None = None,
    limits: DecodeLimits | None = None,
    threads: int = 0,
    name: str | None = None,
) -> FrameBatcher:
    """A ``FrameBatcher`` over ``path``; iterate it for batches, read ``.stats`` for counters.

    ``sample_fps``: frames kept per second of video (0 = every frame); ``batch_size``: frames per
    batch (the last may be shorter); ``queue_size``: batches decoded ahead of the consumer;
    ``threads``: decoder threads (0 = the library's default); ``info``: a ``probe`` result
    (probed here when omitted); ``name``: how messages call the video (default: the file name).
    """
    return FrameBatcher(
        path, sample_fps=sample_fps, batch_size=batch_size, backend=backend, stop=stop,
        queue_size=queue_size, info=info, limits=limits, threads=threads, name=name,
    )
