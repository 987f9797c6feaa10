"""What person linking adds to a video's CPU time (issue 20's bound: at most 10 %).

For each clip, in one process, ``analyze_video`` runs alternately as the worker runs it (person
linking: the embedding net loaded, each track's best chip cut, the linkable appearances embedded
and linked) and without it (no embedding net, no chips, no descriptors: every appearance its own
person, as before person keys). The switch replaces the two pieces linking adds, ``BestChips``
and the analyzer's ``embeddings``, for the "without" rounds only. Each round's process CPU time
(user + system, all threads) is recorded; the ratio of the medians is reported. Interleaving
matters on a shared machine: other jobs slow whole stretches of time, not one variant. Where runs
vary by more than the few per cent in question, the second figure is steadier: within each linking
run, the CPU seconds spent inside the pieces linking adds (loading the net, cutting chips,
embedding, linking; the chips are cut while the decoding thread runs, so that part counts some of
its time too) over the rest of the same run.

Run:  pytest benchmarks/test_bench_linking.py      (CPU; ANALYZER_BENCH_ROUNDS, default 5)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import analyzer.analysis.pipeline as pipeline
from analyzer.analysis.descriptors import BestChips
from analyzer.settings import Settings
from models.dlib_resnet import FaceEmbedder
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


def _timed(spent: list[float], function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, adding the process CPU seconds of each call to ``spent[0]``."""

    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - started

    return call


def _cpu_seconds(path: Path, linking: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float, int]:
    """Process CPU seconds of one ``analyze_video``, those spent inside the pieces linking adds
    (loading the embedding net, cutting chips, embedding and linking), and how many appearances
    got a descriptor."""
    spent = [0.0]
    with monkeypatch.context() as patch:
        if linking:
            patch.setattr(FaceEmbedder, "from_file", _timed(spent, FaceEmbedder.from_file))
            for name in ("after_batch", "describe"):
                patch.setattr(BestChips, name, _timed(spent, getattr(BestChips, name)))
            patch.setattr(pipeline, "assign_people", _timed(spent, pipeline.assign_people))
        else:
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
    return seconds, spent[0], described


@pytest.mark.parametrize("clip", list(CLIPS))
def test_linking_cpu_cost(benchmark, clip: str, bench_summary: dict[str, list[str]], monkeypatch) -> None:
    path = CLIPS[clip]
    if not path.is_file():
        pytest.skip(f"{path} missing")
    _cpu_seconds(path, True, monkeypatch)  # warm-up: first-call allocations, file cache
    seconds: dict[bool, list[float]] = {True: [], False: []}
    shares: list[float] = []
    described = 0

    def one_round() -> None:
        nonlocal described
        for linking in (False, True):
            total, added, count = _cpu_seconds(path, linking, monkeypatch)
            seconds[linking].append(total)
            if linking:
                shares.append(added / (total - added))
                described = count

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    share = statistics.median(shares)
    benchmark.extra_info.update({"cpu_s_without": off, "cpu_s_with": on, "ratio": on / off, "added_share": share})
    bench_summary.setdefault("person linking CPU cost", []).append(
        f"{clip}: inside linking's pieces +{100 * share:.1f} % of the rest of the run (median of {ROUNDS}); "
        f"whole runs {off:.2f} -> {on:.2f} CPU s, x{on / off:.3f} (medians, interleaved, "
        f"{torch.get_num_threads()} threads; {described} appearances embedded; rounds without "
        f"{[round(s, 2) for s in seconds[False]]}, with {[round(s, 2) for s in seconds[True]]})"
    )
