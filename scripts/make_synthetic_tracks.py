#!/usr/bin/env python3
"""Make the synthetic labelled clips: FairFace 540 crops as video tracks (analyzer.evaluation.synthetic).

    .venv/bin/python scripts/make_synthetic_tracks.py --out out/synthetic --half fit

writes ``out/synthetic/clips/synth-fit-NN.mp4`` (16 tracks per 1280x720 clip) and
``out/synthetic/labels.json``. Faces from FairFace (Kärkkäinen and Joo, WACV 2021, CC BY 4.0).
The clips are a cache: make them again rather than commit them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FAIRFACE = REPO.parent / "shared" / "data" / "fairface_540"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from analyzer.evaluation.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (clips/ and labels.json)")
    parser.add_argument("--half", choices=("fit", "held_out", "all"), default="fit", help="which half (default fit)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N crops of each half")
    parser.add_argument("--fairface", default=str(DEFAULT_FAIRFACE), help=f"FairFace 540 (default {DEFAULT_FAIRFACE})")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: must be 1 or more")
    started = time.monotonic()
    labels = generate(args.fairface, args.out, half_name=args.half, seed=args.seed, limit=args.limit)
    tracks = sum(len(video["appearances"]) for video in labels["videos"])
    print(f"{tracks} tracks in {len(labels['videos'])} clips in {args.out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
