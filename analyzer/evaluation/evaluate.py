"""``analyzer evaluate``: how right the gender, gender_score and age are, on a labelled folder.

The folder is laid out as ``../shared/data/utkface_eval``: ``MANIFEST.tsv`` and ``images/``
with one face per image (see analyzer.evaluation.evalset). How each image is measured, and how an image
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

from analyzer.errors import InputNotFound, model_errors
from analyzer.evaluation import evalset
from models.weights import CLASSIFIERS, DEFAULT_CLASSIFIER, DETECTORS

__all__ = ["register", "run_evaluate"]

log = logging.getLogger(__name__)

HALVES = ("fit", "held-out", "all")


@model_errors()
def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``evaluate``: see the module docstring."""
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure gender, gender_score and age on a labelled folder of face images",
        description="Run every image of a labelled folder (MANIFEST.tsv + images/, as ../shared/data/utkface_eval) "
        "through the detector and classifier; print and write gender accuracy (overall, per age bin, race and "
        "pose), calibration, accuracy at coverage, age MAE and age-range coverage, with PNG charts.",
    )
    parser.add_argument("folder", help="folder with MANIFEST.tsv and images/ (the utkface_eval layout)")
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
