"""analyze_video's summary: where the time went and how much memory the run took."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analyzer.analysis.pipeline import analyze_video
from analyzer.settings import Settings

STAGES = ("wait_decode_s", "upload_s", "models_s", "track_s")


def _analyze(video: Path, models_dir: Path, **overrides: object):
    settings = Settings(video_key=str(video), video_id=1, model_dir=models_dir, log_format="json", **overrides)
    return analyze_video(video, settings)


@pytest.mark.slow
def test_cpu_summary_accounts_for_the_run(walking_video: Path, models_dir: Path) -> None:
    result = _analyze(walking_video, models_dir, device="cpu", decoder="opencv", batch_size=16)
    stats = result.stats

    assert result.frames == 21 and stats["frames_decoded"] == 105  # 4.2 s at 5 of 25 frames/s
    assert stats["device"] == "cpu" and stats["decoder"] == "opencv"
    # the consumer's stages are disjoint parts of the run
    assert all(stats[stage] >= 0 for stage in STAGES)
    assert sum(stats[stage] for stage in STAGES) <= stats["wall_s"]
    assert stats["models_s"] > 0
    # both are rounded to 2 decimals: on a slow machine that rounding is more than 2 percent
    assert stats["frames_per_s"] == pytest.approx(21 / stats["wall_s"], rel=0.02, abs=0.006)
    assert stats["realtime_factor"] == pytest.approx(4.2 / stats["wall_s"], rel=0.02, abs=0.006)
    assert 0 < stats["peak_rss_mib"] < 4096
    assert not any(key.startswith("peak_gpu") or key.startswith("gpu_") for key in stats)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_summary_reports_gpu_memory_inside_the_cap(walking_video: Path, models_dir: Path) -> None:
    result = _analyze(walking_video, models_dir, device="cuda", decoder="opencv")  # default cap and batch size
    stats = result.stats

    assert 0 < stats["peak_gpu_mib"] <= stats["peak_gpu_reserved_mib"] <= Settings.gpu_memory_mb
    # a cap that forces the allocator to free its cache and retry costs a device sync each time
    assert stats["gpu_alloc_retries"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("classifier", ["cydral", "insightface"])
def test_classifier_setting_reaches_the_models_and_every_event_has_its_age_range(
    walking_video: Path, models_dir: Path, classifier: str
) -> None:
    result = _analyze(
        walking_video, models_dir, device="cpu", decoder="opencv", classifier=classifier, min_gender_score=0.0
    )
    assert f"+{classifier}-" in result.stats["model_version"]
    judged = [e for e in result.events if e.age is not None]
    assert len(judged) >= 5
    for event in judged:
        assert event.age_low <= event.age <= event.age_high
        assert event.gender is not None and 50.0 < event.gender_score <= 99.9  # every gender answered


@pytest.mark.slow
def test_sample_rate_and_least_face_size_change_what_is_analysed(walking_video: Path, models_dir: Path) -> None:
    # The default run (5 samples/s, faces from 40 px judged) is the classifier test's above.
    result = _analyze(walking_video, models_dir, device="cpu", decoder="opencv", sample_fps=2.0, min_face_px=4000.0)
    assert result.frames == 9 and result.stats["frames_decoded"] == 105  # 0, 0.5 ... 4.0 s of 4.2 s
    assert result.events  # the faces are still found and linked...
    assert all(e.age is None and e.gender is None for e in result.events)  # ...but none is large enough to judge
