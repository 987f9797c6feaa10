"""Probing: refuse a bad or oversized video before any bulk decoding.

``probe`` opens a file and refuses it early: no video stream, a still image, unreadable, or over
the resolution/duration limits. Timestamps are milliseconds from the stream's start time
(``(pts - start_time) * time_base``, rounded half up), the same value OpenCV's
``CAP_PROP_POS_MSEC`` reports, so every reader samples the same frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from analyzer.errors import InputNotFound, InputRejected, UndecodableVideo

logger = logging.getLogger(__name__)

# Container formats that hold still images, not videos (FFmpeg demuxer names).
STILL_IMAGE_FORMATS = frozenset({"image2", "image2pipe", "webp_pipe", "apng"})


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
        name,
        info.width,
        info.height,
        info.codec,
        info.fps,
        info.frame_count,
        info.duration_ms,
        info.rotation,
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
        width=width,
        height=height,
        fps=fps,
        frame_count=frame_count,
        duration_ms=duration_ms,
        rotation=0,
        codec=str(ctx.name),
        container=str(container.format.name),
        time_base=time_base,
        start_pts=start_pts,
        colorspace=colorspace,
        full_range=full_range,
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
            f"video {name}: {info.duration_ms / 1000:.1f} s is over the limit of {limits.max_duration_s:g} s"
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
