"""Batched, sampled frames: a decoding thread ahead of the consumer.

``FrameBatcher`` runs a producer thread that decodes the video, keeps the first frame of every
``1 / sample_fps`` seconds of presentation time, and hands fixed-size ``FrameBatch``es to the
consumer through a bounded queue, so decoding overlaps the work done on the previous batch.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import InputRejected, Interrupted, UndecodableVideo
from analyzer.video.backend import Backend, open_reader, resolve_backend
from analyzer.video.probe import DecodeLimits, VideoInfo, probe
from analyzer.video.readers.base import DecodeStats, FrameReader
from analyzer.video.sampling import TimestampSampler

logger = logging.getLogger(__name__)

PUT_POLL_S = 0.05  # seconds between checks of the stop flags while the queue is full
GET_POLL_S = 0.05  # seconds between checks of the producer while the queue is empty
JOIN_TIMEOUT_S = 2.0  # seconds to wait for the producer thread when closing
LOW_YIELD_WARNING = 0.9  # warn when fewer than this share of the announced frames decoded


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

    Args:
        path: the video file.
        sample_fps: frames kept per second of video (0 = every frame).
        batch_size: frames per batch (the last may be shorter).
        backend: ``opencv``, ``pyav``, ``nvdec`` or ``auto`` (``analyzer.video.backend``).
        stop: set it to end decoding (the iterator then raises ``Interrupted``).
        queue_size: batches decoded ahead of the consumer.
        info: a ``probe`` result (probed here when omitted).
        limits: refuse a video over these.
        threads: decoder threads (0 = the library's default).
        name: how messages call the video (default: the file name).
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
                raise InputRejected(f"video {self.name}: runs past the limit of {self._limits.max_duration_s:g} s")
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

    def _make_batch(self, reader: FrameReader, numbers: list[int], stamps: list[int], images: list[Any]) -> FrameBatch:
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
                self.name,
                self.stats.covered,
                expected,
            )


class _AnyEvent:
    """Read-only view that is set when any of its events is set (what readers poll)."""

    def __init__(self, *events: threading.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)
