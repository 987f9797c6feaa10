"""Run the worker's pipeline on every video of a labels.json and cache each appearance's faces.

    .venv/bin/python scripts/video_features.py tests/data/video_set/labels.json out/video_features

Writes ``<out>/<video name>.json``: the classifier temperature the faces' log-odds were divided
by, the video's kind and half, every appearance's faces (analyzer.evaluation.videoset; the
labels are matched to them when read) and its person key as the worker linked them (no
descriptors), the input of ``scripts/fit_pooling.py``. A video whose file
exists already is skipped (delete it to redo).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from analyzer.evaluation import videoset
from analyzer.faces import default_model_dir
from models.weights import CLASSIFIERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("out")
    parser.add_argument("--half", choices=("fit", "held_out"), help="only the synthetic videos of this half")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for video in videoset.load(args.labels):
        target = out / f"{video.name}.json"
        if target.exists() or (args.half and video.half and video.half != args.half):
            continue
        started = time.monotonic()
        result = videoset.analyse(video, default_model_dir())
        appearances = result.appearances
        record = {
            "name": video.name,
            "kind": video.kind,
            "half": video.half,
            "temperature": CLASSIFIERS["cydral"].gender_temperature,
            "seconds": round(time.monotonic() - started, 1),
            "appearances": videoset.faces_to_json(appearances),
            "people": {event.event_key: event.person_key for event in result.events},
        }
        target.write_text(json.dumps(record) + "\n")
        matches = videoset.match(video, appearances)
        found = sum(m.faces is not None for m in matches)
        print(f"{video.name}: {found}/{len(matches)} labels matched, {record['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
