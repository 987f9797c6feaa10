"""Cost per face of the face embedding (dlib's ResNet) next to the Cydral gender and age nets.

Faces: the detections of 32 evaluation images (../shared/data/utkface_eval, one face each,
200 x 200), cut once. Each case times one stage over all faces, as FaceAnalyzer runs it (chunks of
CPU_CLASSIFY_CHUNK faces on CPU, one call on CUDA):

- ``align``: the analyzer's whole alignment (``grid_sample``) without and with the 150 px chip,
- ``cydral``: gender + age, each chip averaged with its mirror image (the default classifier),
- ``embed``: the 128-D descriptor from the 150 px chip.

The stages run interleaved, one after the other in every round, and each keeps its fastest
round: other jobs on a shared machine slow whole stretches of time, not one stage.

Run:  pytest benchmarks/test_bench_embedding.py     (CPU; CUDA too when present)
Milliseconds per face go into ``extra_info``; the embedding's cost relative to the Cydral nets'
is printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch

from models.face_analyzer import FaceAnalyzer
from tests.conftest import SHARED, fetched_models_dir

IMAGES = sorted((SHARED / "data" / "utkface_eval" / "images").glob("*.jpg"))[::40][:32]
ROUNDS = {"cpu": 15, "cuda": 30}
DEVICES = ["cpu", "cuda"]


@pytest.mark.parametrize("device", DEVICES)
def test_embedding_cost_per_face(benchmark, device: str, bench_summary: dict[str, list[str]]) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    frames = torch.from_numpy(np.stack([cv2.imread(str(p)) for p in IMAGES])).permute(0, 3, 1, 2).float()
    frames = frames.to(device)
    plain = FaceAnalyzer(fetched_models_dir(), device=device)
    embedding = FaceAnalyzer(fetched_models_dir(), device=device, embeddings=True)
    with torch.inference_mode():
        detections = plain.detect(frames)
        crops = embedding.align(frames, detections)
    faces = len(detections.image_index)
    assert faces >= len(IMAGES)
    stages: dict[str, Callable[[], object]] = {
        "align": lambda: plain.align(frames, detections),
        "align+150": lambda: embedding.align(frames, detections),
        "cydral": lambda: plain.classify(crops),
        "embed": lambda: embedding.embed(crops),
    }
    best = dict.fromkeys(stages, float("inf"))

    def one_round() -> None:
        for name, run in stages.items():
            start = time.perf_counter()
            with torch.inference_mode():
                run()
            if device == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)

    one_round()  # warm-up
    best = dict.fromkeys(stages, float("inf"))
    benchmark.pedantic(one_round, rounds=ROUNDS[device], iterations=1)
    ms = {name: 1000 * seconds / faces for name, seconds in best.items()}
    benchmark.extra_info.update({f"{name}_ms_per_face": value for name, value in ms.items()})
    chip = ms["align+150"] - ms["align"]
    bench_summary.setdefault("face embedding cost", []).append(
        f"{device} ({torch.get_num_threads()} threads, {faces} faces, best of {ROUNDS[device]}): Cydral gender + "
        f"age, mirrored {ms['cydral']:.2f} ms/face; embedding net {ms['embed']:.2f} ms/face "
        f"(x{ms['embed'] / ms['cydral']:.2f}); the 150 px chip adds {chip:.2f} ms/face to alignment "
        f"({ms['align']:.2f} -> {ms['align+150']:.2f})"
    )
