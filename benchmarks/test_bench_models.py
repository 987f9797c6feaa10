"""Throughput of FaceAnalyzer: batch 1 vs batch 32 on the same 32 video frames.

Frames: 32 evenly spaced frames of ../shared/media/facenet_pytorch_walking.mp4 (1920x1080,
4-8 faces each), detected at the default 960 px longer side. Each benchmark round analyses all
32 frames, either one call per frame (batch 1) or one call (batch 32); upload, detection,
alignment, classification and the copy back are all inside the timing.

Run:  pytest benchmarks/test_bench_models.py            (CPU; CUDA fp32/fp16 when present)
Each case stores images/s and faces/s (from the fastest round) in ``extra_info``; the batch32/batch1 ratios are printed
at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.face_analyzer import FaceAnalyzer
from tests.conftest import fetched_models_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANALYZER_SHARED_DIR", REPO.parent / "shared"))
VIDEO = SHARED / "media" / "facenet_pytorch_walking.mp4"
MODELS_DIR = fetched_models_dir()  # ../shared/models as `analyzer models fetch` installs it (Cydral converted)
NUM_FRAMES = 32
ROUNDS = {"cpu": 3, "cuda": 10}

# (device, half) settings; CUDA ones are skipped without CUDA
SETTINGS = {
    "cpu-fp32": ("cpu", False),
    "cuda-fp32": ("cuda", False),
    "cuda-fp16": ("cuda", True),
}
RESULTS: dict[tuple[str, int], dict[str, float]] = {}


def read_frames(path: Path, count: int) -> np.ndarray:
    """``count`` evenly spaced frames of the video, (count, H, W, 3) uint8 BGR."""
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
    frames = []
    for index in range(total):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames.append(frame)
    capture.release()
    assert len(frames) == count, f"{path}: read {len(frames)} of {count} frames"
    return np.stack(frames)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return read_frames(VIDEO, NUM_FRAMES)


@pytest.fixture(scope="module", autouse=True)
def report_ratios(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = []
    for setting in SETTINGS:
        one, many = RESULTS.get((setting, 1)), RESULTS.get((setting, NUM_FRAMES))
        if one and many:
            lines.append(
                f"{setting}: batch {NUM_FRAMES} {many['images_per_s']:.1f} img/s "
                f"({many['faces_per_s']:.0f} faces/s), batch 1 {one['images_per_s']:.1f} img/s "
                f"({one['faces_per_s']:.0f} faces/s); ratio batch{NUM_FRAMES}/batch1 = "
                f"{many['images_per_s'] / one['images_per_s']:.2f}"
            )
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name()}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and lines:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_sep("-", "FaceAnalyzer throughput")
            for line in lines:
                reporter.write_line(line)


@pytest.mark.parametrize("batch", [1, NUM_FRAMES])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_analyze_throughput(benchmark, frames: np.ndarray, setting: str, batch: int) -> None:
    device, half = SETTINGS[setting]
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    analyzer = FaceAnalyzer(MODELS_DIR, device=device, half=half)

    def analyse_all() -> int:
        return sum(len(analyzer.analyze(frames[i : i + batch])) for i in range(0, len(frames), batch))

    faces = analyse_all()  # warm-up: kernels, anchors, allocator
    assert faces > 4 * NUM_FRAMES  # 4-8 faces a frame

    result = benchmark.pedantic(analyse_all, rounds=ROUNDS[device], iterations=1)
    assert result == faces
    if benchmark.stats is None:  # --benchmark-disable: a smoke run only
        return
    seconds = benchmark.stats.stats.min  # other processes only ever add time
    figures = {"images_per_s": NUM_FRAMES / seconds, "faces_per_s": faces / seconds, "faces": faces}
    benchmark.extra_info.update(figures)
    RESULTS[(setting, batch)] = figures
