"""What person linking adds to a video's CPU time (issue 20's bound: at most 10 %).

For each clip, in one process, ``analyze_video`` runs alternately as the worker runs it (person
linking: the embedding net loaded, each track's best chip cut, the linkable appearances embedded
and linked) and without it (no embedding net, no chips, no descriptors: every appearance its own
person, as before person keys). The switch replaces the two pieces linking adds, ``BestChips``
and the analyzer's ``embeddings``, for the "without" rounds only. Each round's process CPU time
(user + system, all threads) is recorded; the ratio of the medians is reported. Interleaving
matters on a shared machine: other jobs slow whole stretches of time, not one variant.

Run:  pytest benchmarks/test_bench_linking.py      (CPU; ANALYZER_BENCH_ROUNDS, default 5)
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import analyzer.analysis.pipeline as pipeline
from analyzer.settings import Settings
from tests.conftest import SHARED, fetched_models_dir

REPO = Path(__file__).resolve().parents[1]
CLIPS = {
    "walking (README sample)": SHARED / "media" / "facenet_pytorch_walking.mp4",
    "hamilton": SHARED / "media" / "short_hamilton_clip.mp4",
    "selfie (video set)": REPO / "tests" / "data" / "video_set" / "selfie.mp4",
    "hikers (video set)": REPO / "tests" / "data" / "video_set" / "hikers.mp4",
}
ROUNDS = int(os.environ.get("ANALYZER_BENCH_ROUNDS", "5"))


class _NoChips:
    """BestChips that keeps nothing: no chip is cut, no appearance embedded."""

    def __init__(self, *args: Any) -> None:
        pass

    def after_batch(self, *args: Any) -> None:
        pass

    def describe(self, events: Any, appearances: dict, track_ids: Any, model: Any) -> dict:
        return appearances


def _cpu_seconds(path: Path, linking: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[float, int]:
    """Process CPU seconds of one ``analyze_video`` and how many appearances got a descriptor."""
    with monkeypatch.context() as patch:
        if not linking:
            analyzer = pipeline.FaceAnalyzer
            patch.setattr(pipeline, "BestChips", _NoChips)
            patch.setattr(pipeline, "FaceAnalyzer", lambda *a, **k: analyzer(*a, **(k | {"embeddings": False})))
        settings = Settings(video_key=str(path), video_id=1, model_dir=fetched_models_dir(), device="cpu")
        started = time.process_time()
        result = pipeline.analyze_video(path, settings)
        seconds = time.process_time() - started
    described = sum(
        faces.embedding is not None and bool(np.isfinite(faces.embedding).all(axis=1).any())
        for faces in result.appearances.values()
    )
    return seconds, described


@pytest.mark.parametrize("clip", list(CLIPS))
def test_linking_cpu_cost(benchmark, clip: str, bench_summary: dict[str, list[str]], monkeypatch) -> None:
    path = CLIPS[clip]
    if not path.is_file():
        pytest.skip(f"{path} missing")
    _cpu_seconds(path, True, monkeypatch)  # warm-up: first-call allocations, file cache
    seconds: dict[bool, list[float]] = {True: [], False: []}
    described = 0

    def one_round() -> None:
        nonlocal described
        for linking in (False, True):
            spent, count = _cpu_seconds(path, linking, monkeypatch)
            seconds[linking].append(spent)
            described = max(described, count) if linking else described

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    benchmark.extra_info.update({"cpu_s_without": off, "cpu_s_with": on, "ratio": on / off})
    bench_summary.setdefault("person linking CPU cost", []).append(
        f"{clip}: {off:.2f} -> {on:.2f} CPU s, x{on / off:.3f} (medians of {ROUNDS} interleaved rounds, "
        f"{torch.get_num_threads()} threads; {described} appearances embedded; rounds without "
        f"{[round(s, 2) for s in seconds[False]]}, with {[round(s, 2) for s in seconds[True]]})"
    )
