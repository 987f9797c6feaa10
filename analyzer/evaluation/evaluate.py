"""``analyzer evaluate``: how right the gender, gender_score and age are, on a labelled folder
of face images or on the labelled video set.

The folder is laid out as ``../shared/data/utkface_eval`` (``MANIFEST.tsv`` with ages, and
``images/``) or as ``../shared/data/fairface_540`` (``MANIFEST.tsv`` with FairFace age bins, images
beside it), one face per image (see analyzer.evaluation.evalset). ``--video-set LABELS`` runs the
worker's pipeline on every video of a labels.json (analyzer.evaluation.videoset) and scores its
appearances, real and synthetic videos apart, with the shipped constants. How each image is measured, and how an image
without a detected face counts, is in analyzer.evaluation.quality. This module stays light (no numpy, no
torch at import): the CLI builds its parser on every run.

Output: a markdown table on stdout, ``report.json`` and ``report.md`` and PNG charts in
``--out``: accuracy-coverage curve, reliability diagram, age MAE per age bin. With several
``--classifier`` values the classifiers sit side by side.

``--fit`` fits the calibration constants (gender temperature, ANALYZER_MIN_GENDER_SCORE, age
interval) on the fitting half and reports with them; without it the shipped constants are used.
Report on the held-out half (the default) so that no figure is measured on what it was fitted to.

Example::

    analyzer evaluate ../shared/data/utkface_eval --classifier cydral --classifier insightface \\
        --out docs/quality
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from analyzer.errors import InputNotFound, model_errors
from analyzer.evaluation import evalset
from models.weights import CLASSIFIERS, DEFAULT_CLASSIFIER, DETECTORS

__all__ = ["register", "run_evaluate"]

log = logging.getLogger(__name__)

HALVES = ("fit", "held-out", "all")


@model_errors()
def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``evaluate``: see the module docstring."""
    if args.video_set:
        return _evaluate_videos(args)
    if not args.folder:
        raise InputNotFound("give a labelled folder or --video-set LABELS")
    folder = Path(args.folder)
    if not (folder / "MANIFEST.tsv").is_file():
        raise InputNotFound(f"{folder}: no MANIFEST.tsv (expected the utkface_eval layout)")
    try:
        faces = evalset.load(folder)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputNotFound(f"{folder}: {exc}") from exc
    classifiers = args.classifier or [DEFAULT_CLASSIFIER]
    if args.fit and args.half != "held-out":
        log.warning("--fit with --half %s: the figures include the faces the constants were fitted on", args.half)

    from analyzer.evaluation import quality
    from analyzer.faces import default_model_dir
    from models.face_analyzer import FaceAnalyzer

    reports = {}
    for name in classifiers:
        analyzer = FaceAnalyzer(
            args.model_dir or default_model_dir(), detector=args.detector, classifier=name, device=args.device
        )
        constants = quality.shipped_calibration(name)
        if args.fit:
            constants = quality.fit(quality.run_chips(analyzer, quality.half(faces, "fit")))
            log.info("fitted on the fit half for %s: %s", name, constants)
        reports[name] = quality.report(quality.run_chips(analyzer, quality.half(faces, args.half)), constants)
    out = Path(args.out)
    text = quality.markdown(reports, args.half, args.detector)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(
        json.dumps({"half": args.half, "detector": args.detector, "classifiers": reports}, indent=1) + "\n"
    )
    charts = quality.write_charts(reports, out)
    sys.stdout.write(text)
    sys.stdout.write(
        f"\nwritten: {out / 'report.md'}, {out / 'report.json'}, " + ", ".join(str(p) for p in charts) + "\n"
    )
    return 0


def _evaluate_videos(args: argparse.Namespace) -> int:
    """``--video-set``: the pipeline on each labelled video, its appearances scored per kind."""
    from analyzer.analysis.pooling import POOLINGS
    from analyzer.evaluation import videoset
    from analyzer.faces import default_model_dir
    from analyzer.settings import DEFAULT_MIN_GENDER_SCORE
    from models.weights import classifier_config

    try:
        videos = videoset.load(args.video_set)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputNotFound(f"{args.video_set}: {exc}") from exc
    model_dir = Path(args.model_dir or default_model_dir())
    temperature = classifier_config(DEFAULT_CLASSIFIER).gender_temperature
    pooling = POOLINGS[DEFAULT_CLASSIFIER]
    records: list[dict] = []
    written: list[tuple[str, videoset.Match, Any]] = []
    for video in videos:
        result = videoset.analyse(video, model_dir, device=args.device, detector=args.detector)
        matches = videoset.match(video, result.appearances)
        records.append(
            {"name": video.name, "kind": video.kind, "half": video.half, "temperature": temperature, "matches": matches}
        )
        events = {e.event_key: e for e in result.events}
        written += [(video.kind, m, events.get(m.event_key or "")) for m in matches]
    rows = videoset.judged(records, temperature, pooling)
    reports = {
        kind: videoset.report([r for r in rows if r.kind == kind], pooling.rho, DEFAULT_MIN_GENDER_SCORE, pooling.age)
        for kind in sorted({r.kind for r in rows})
    }
    for kind, report in reports.items():  # as the worker writes them: events, pooled per person
        pairs = [(m, event) for k, m, event in written if k == kind]
        report["events"] = videoset.events_report(pairs, DEFAULT_MIN_GENDER_SCORE)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "videos.json").write_text(json.dumps(reports, indent=1) + "\n")
    lines = [
        "| videos | appearances | answered % | right % of answered | as written (per person): answered % / right %"
        " | age-bin accuracy % |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in reports.items():
        right = "-" if r["right_of_answered"] is None else f"{100 * r['right_of_answered']:.1f}"
        age = "-" if r["age_bin_accuracy"] is None else f"{100 * r['age_bin_accuracy']:.1f}"
        e = r["events"]
        e_right = "-" if e["right_of_answered"] is None else f"{100 * e['right_of_answered']:.1f}"
        lines.append(
            f"| {kind} | {r['appearances']} | {100 * r['answered_share']:.1f} | {right} |"
            f" {100 * e['answered_share']:.1f} / {e_right} | {age} |"
        )
    sys.stdout.write("\n".join(lines) + f"\n\nwritten: {out / 'videos.json'}\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure gender, gender_score and age on a labelled folder of face images",
        description="Run every image of a labelled folder (MANIFEST.tsv + images/, as ../shared/data/utkface_eval) "
        "through the detector and classifier; print and write gender accuracy (overall, per age bin, race and "
        "pose), calibration, accuracy at coverage, age MAE and age-range coverage, with PNG charts.",
    )
    parser.add_argument(
        "folder", nargs="?", help="folder with MANIFEST.tsv and its images (utkface_eval or fairface_540 layout)"
    )
    parser.add_argument(
        "--video-set",
        metavar="LABELS",
        help="score the worker's appearances on the labelled videos of LABELS (e.g. tests/data/video_set/labels.json)",
    )
    parser.add_argument(
        "--classifier",
        action="append",
        choices=tuple(CLASSIFIERS),
        help=f"gender-age model; repeat to compare (default {DEFAULT_CLASSIFIER})",
    )
    parser.add_argument("--detector", choices=DETECTORS, default="retinaface", help="face detector")
    parser.add_argument(
        "--half",
        choices=HALVES,
        default="held-out",
        help="faces to report on (default held-out: the half nothing was fitted on)",
    )
    parser.add_argument(
        "--fit", action="store_true", help="fit temperature, min gender score and age interval on the fit half first"
    )
    parser.add_argument("--out", default="evaluation", help="folder for report.md, report.json and PNGs")
    parser.add_argument("--model-dir", default=None, help="folder with the weight files")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.set_defaults(handler=run_evaluate)
