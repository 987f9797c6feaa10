#!/usr/bin/env python3
"""Measurements behind analyzer.evaluation.synthetic, on this machine's CPU.

``box``: where RetinaFace boxes the face in the FairFace crops (centre and size as shares of the
crop side; medians and quartiles, ``synthetic.FACE_IN_CROP``), and each crop's box, the table
``analyzer/evaluation/fairface_540_boxes.tsv`` the generator places and labels faces by::

    .venv/bin/python scripts/measure_synthetic_tracks.py box ../shared/data/fairface_540 \
        --write analyzer/evaluation/fairface_540_boxes.tsv

``tracks``: the worker (``analyze_video``, as ``analyzer run`` does it) on every clip of a
generated set, its events matched to the labels (analyzer.evaluation.appearances): how many
tracks are found as exactly one appearance, split or missed, by face width; of those found once, how
many were judged (an age), answered (a gender at the default threshold) and right; the time taken::

    .venv/bin/python scripts/measure_synthetic_tracks.py tracks out/synthetic/labels.json --json out/synthetic/run.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from analyzer.evaluation.appearances import LabelMatch

REPO = Path(__file__).resolve().parents[1]
SIZE_BANDS = ((40, 55), (55, 70), (70, 85), (85, 101))  # face px, [low, high)


def measure_box(args: argparse.Namespace) -> int:
    import cv2

    from analyzer.evaluation.fairface import load_fairface
    from models.face_analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer(args.model_dir, detector="retinaface", device="cpu")
    images = load_fairface(args.fairface)[: args.limit]
    rows, boxes, missing = [], [], 0
    for start in range(0, len(images), 32):
        chunk = images[start : start + 32]
        frames = np.stack([cv2.imread(str(image.path), cv2.IMREAD_COLOR) for image in chunk])
        faces = analyzer.analyze(frames)
        side = frames.shape[2]
        for i in range(len(chunk)):
            found = faces.for_frame(i)
            if not len(found):
                missing += 1
                continue
            # the face nearest the crop's centre: FairFace crops centre their subject
            centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
            best = int(np.argmin(np.abs(centres - side / 2).sum(axis=1)))
            x1, y1, x2, y2 = (float(v) for v in found.boxes[best])
            boxes.append((chunk[i].path.name, x1, y1, x2 - x1, y2 - y1, float(found.scores[best])))
            rows.append(((x1 + x2) / 2 / side, (y1 + y2) / 2 / side, (x2 - x1) / side, (y2 - y1) / side))
    table = np.array(rows)
    print(f"{len(rows)} crops with a face, {missing} without")
    for name, column in zip(("centre x", "centre y", "width", "height"), table.T, strict=True):
        q1, median, q3 = np.percentile(column, [25, 50, 75])
        print(f"{name:9s} median {median:.3f}  quartiles {q1:.3f}-{q3:.3f}")
    if args.write:
        lines = ["file\tx\ty\tw\th\tscore"]
        lines += [f"{name}\t{x:.1f}\t{y:.1f}\t{w:.1f}\t{h:.1f}\t{score:.3f}" for name, x, y, w, h, score in boxes]
        Path(args.write).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


def size_band(face_px: int) -> str:
    low, high = next(band for band in SIZE_BANDS if band[0] <= face_px < band[1])
    return f"{low}-{high - 1}"


def _answers(match: LabelMatch) -> Counter[str]:
    """For a track found as one appearance: was it judged (an age), answered (a gender), right."""
    if match.outcome != "one":
        return Counter()
    (event,) = match.events
    answered = event.gender is not None
    right = answered and event.gender == match.label["gender"]
    return Counter(judged=event.age is not None, answered=answered, right=right)


def measure_tracks(args: argparse.Namespace) -> int:
    from analyzer.analysis.pipeline import analyze_video
    from analyzer.evaluation.appearances import match_events
    from analyzer.settings import Settings

    labels_path = Path(args.labels)
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    per_video, unmatched_total, wall_total, cpu_total, video_s = [], 0, 0.0, 0.0, 0.0
    for video in labels["videos"]:
        path = labels_path.parent / video["file"]
        settings = Settings(
            video_key=str(path), video_id=1, model_dir=Path(args.model_dir), device="cpu", log_format="json"
        )
        started, cpu_started = time.monotonic(), time.process_time()
        result = analyze_video(path, settings)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
        matches, unmatched = match_events(video["appearances"], result.events)
        for match in matches:
            for band in (size_band(match.label["face_px"]), "all"):
                outcomes[band][match.outcome] += 1
                outcomes[band].update(_answers(match))
        unmatched_total += len(unmatched)
        wall_total += wall
        cpu_total += cpu
        video_s += max(a["end_s"] for a in video["appearances"])
        per_video.append(
            {
                "name": video["name"],
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "events": len(result.events),
                "unmatched": len(unmatched),
                "outcomes": dict(Counter(m.outcome for m in matches)),
                "tracks": [
                    {
                        "id": m.label["id"],
                        "face_px": m.label["face_px"],
                        "outcome": m.outcome,
                        "events": [e.as_dict() for e in m.events],
                    }
                    for m in matches
                ],
            }
        )
        print(f"{video['name']}: {len(result.events)} events, {dict(outcomes['all'])}, {wall:.1f} s", flush=True)
        if args.json:  # after each clip, so a long run stopped early keeps what it measured
            summary = {"outcomes": {k: dict(v) for k, v in outcomes.items()}, "unmatched": unmatched_total}
            summary |= {"wall_s": round(wall_total, 1), "cpu_s": round(cpu_total, 1), "video_s": round(video_s, 1)}
            summary |= {"videos": per_video}
            Path(args.json).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    columns = ("one", "split", "missed", "judged", "answered", "right")
    print(f"{'face px':8s}" + "".join(f"{c:>9s}" for c in columns))
    for band in [*(size_band(low) for low, _ in SIZE_BANDS), "all"]:
        print(f"{band:8s}" + "".join(f"{outcomes[band][c]:9d}" for c in columns))
    print(
        f"unmatched events {unmatched_total}; {len(per_video)} clips, {video_s:.0f} s of video:"
        f" worker wall {wall_total:.0f} s, CPU {cpu_total:.0f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    box = actions.add_parser("box", help="RetinaFace's face box in the FairFace crops")
    box.add_argument("fairface", help="folder of FairFace 540 (MANIFEST.tsv beside the images)")
    box.add_argument("--limit", type=int, default=None, help="only the first N crops")
    box.add_argument("--write", help="write each crop's box (crop px) to this TSV (synthetic.FACE_BOXES)")
    box.set_defaults(handler=measure_box)
    tracks = actions.add_parser("tracks", help="the worker's events against a generated set's labels")
    tracks.add_argument("labels", help="labels.json of a generated set")
    tracks.add_argument("--json", help="also write the per-track outcomes to this file")
    tracks.set_defaults(handler=measure_tracks)
    for sub in (box, tracks):
        sub.add_argument("--model-dir", default=str(REPO / "weights"), help="weights folder (default ./weights)")
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
