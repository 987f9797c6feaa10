"""Cost per face of the face embedding (dlib's ResNet) next to the Cydral gender and age nets.

Faces: the detections of 32 evaluation images (../shared/data/utkface_eval, one face each,
200 x 200), cut once. Each case times one stage over all faces, as FaceAnalyzer runs it (chunks of
CPU_CLASSIFY_CHUNK faces on CPU, one call on CUDA):

- ``align``: the analyzer's whole alignment (``grid_sample``) without and with the 150 px chip,
- ``cydral``: gender + age, each chip averaged with its mirror image (the default classifier),
- ``embed``: the 128-D descriptor from the 150 px chip.

Run:  pytest benchmarks/test_bench_embedding.py     (CPU; CUDA too when present)
Milliseconds per face (fastest round) go into ``extra_info``; the embedding's cost relative to
the Cydral nets' is printed at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch

from models.face_analyzer import FaceAnalyzer
from tests.conftest import SHARED, fetched_models_dir

IMAGES = sorted((SHARED / "data" / "utkface_eval" / "images").glob("*.jpg"))[::40][:32]
ROUNDS = {"cpu": 5, "cuda": 20}
DEVICES = ["cpu", "cuda"]
RESULTS: dict[tuple[str, str], float] = {}  # (device, stage) -> ms per face


@pytest.fixture(scope="module", params=DEVICES)
def prepared(request: pytest.FixtureRequest):
    """(device, plain analyzer, embedding analyzer, frames, detections) on one device."""
    device = request.param
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    frames = torch.from_numpy(np.stack([cv2.imread(str(p)) for p in IMAGES])).permute(0, 3, 1, 2).float()
    frames = frames.to(device)
    plain = FaceAnalyzer(fetched_models_dir(), device=device)
    embedding = FaceAnalyzer(fetched_models_dir(), device=device, embeddings=True)
    with torch.inference_mode():
        detections = plain.detect(frames)
    return device, plain, embedding, frames, detections


def _time(benchmark, device: str, stage: str, faces: int, run: Callable[[], object]) -> None:
    def once() -> None:
        with torch.inference_mode():
            run()
        if device == "cuda":
            torch.cuda.synchronize()

    once()  # warm-up
    benchmark.pedantic(once, rounds=ROUNDS[device], iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: a smoke run only
        return
    per_face = 1000 * benchmark.stats.stats.min / faces  # other processes only ever add time
    benchmark.extra_info["ms_per_face"] = per_face
    RESULTS[(device, stage)] = per_face


@pytest.mark.parametrize("stage", ["align", "align+150", "cydral", "embed"])
def test_stage_cost_per_face(benchmark, prepared, stage: str, bench_summary: dict[str, list[str]]) -> None:
    device, plain, embedding, frames, detections = prepared
    faces = len(detections.image_index)
    assert faces >= len(IMAGES)
    with torch.inference_mode():
        crops = embedding.align(frames, detections)
    runs: dict[str, Callable[[], object]] = {
        "align": lambda: plain.align(frames, detections),
        "align+150": lambda: embedding.align(frames, detections),
        "cydral": lambda: plain.classify(crops),
        "embed": lambda: embedding.embed(crops),
    }
    _time(benchmark, device, stage, faces, runs[stage])
    lines = []
    for dev in DEVICES:
        figures = {stage: RESULTS[(dev, stage)] for stage in runs if (dev, stage) in RESULTS}
        if len(figures) == len(runs):
            extra = figures["embed"] + figures["align+150"] - figures["align"]
            lines.append(
                f"{dev}: Cydral (gender + age, mirrored) {figures['cydral']:.2f} ms/face, embedding "
                f"{figures['embed']:.2f} ms/face (ratio {figures['embed'] / figures['cydral']:.2f}); the "
                f"150 px chip adds {figures['align+150'] - figures['align']:.2f} ms/face to alignment "
                f"({figures['align']:.2f} -> {figures['align+150']:.2f}); embeddings cost {extra:.2f} ms/face in all"
            )
    if lines:
        bench_summary["face embedding cost"] = lines
