"""The NVDEC backend: its colour conversion on CPU here, the hardware decoder on a GPU machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from analyzer.video.backend import NVDEC_MAX_CPUS, resolve_backend, usable_cpus
from analyzer.video.batcher import FrameBatcher
from analyzer.video.probe import probe
from analyzer.video.readers.nvdec import nv12_to_bgr, unavailable_reason
from tests.fixtures.videos import HAMILTON, WALKING, media_path

needs_nvdec = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("PyNvVideoCodec") is None,
    reason="needs CUDA and PyNvVideoCodec",
)


def _first_frames(path: Path, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``count`` frames as NV12 (H*3/2 x W) and as BGR, both through PyAV/FFmpeg."""
    import av

    nv12, bgr = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            nv12.append(frame.reformat(format="nv12").to_ndarray())
            bgr.append(frame.to_ndarray(format="bgr24"))
            if len(bgr) == count:
                break
    return nv12, bgr


@pytest.mark.parametrize("clip", [WALKING, HAMILTON])
def test_nv12_to_bgr_matches_ffmpeg(clip: str):
    """The GPU colour conversion, run on CPU tensors, against FFmpeg's (what OpenCV returns)."""
    path = media_path(clip)
    info = probe(path)
    nv12, reference = _first_frames(path, 3)
    bgr = nv12_to_bgr(torch.from_numpy(np.stack(nv12)), colorspace=info.colorspace, full_range=info.full_range)
    assert bgr.dtype == torch.uint8 and tuple(bgr.shape) == (3, info.height, info.width, 3)
    diff = np.abs(bgr.numpy().astype(np.int16) - np.stack(reference).astype(np.int16))
    assert diff.mean() < 1.5 and np.percentile(diff, 99.9) <= 12


def test_nv12_to_bgr_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="NV12"):
        nv12_to_bgr(torch.zeros(2, 100, 64, dtype=torch.uint8))


def test_unavailable_reason_names_the_cause():
    assert unavailable_reason("prores") is not None
    if not torch.cuda.is_available():
        assert unavailable_reason("h264") == "CUDA is not available"


@pytest.mark.gpu
@needs_nvdec
@pytest.mark.parametrize("clip", [WALKING, HAMILTON])
def test_nvdec_matches_opencv(clip: str):
    path = media_path(clip)
    info = probe(path)
    assert resolve_backend("auto", info) == ("nvdec" if usable_cpus() <= NVDEC_MAX_CPUS else "opencv")
    gpu = list(FrameBatcher(path, backend="nvdec", sample_fps=5, batch_size=8, info=info))
    cpu = list(FrameBatcher(path, backend="opencv", sample_fps=5, batch_size=8, info=info))
    assert len(gpu) == len(cpu)
    for gpu_batch, cpu_batch in zip(gpu, cpu, strict=True):
        assert gpu_batch.frames.is_cuda and gpu_batch.frames.dtype == torch.uint8
        assert tuple(gpu_batch.frames.shape) == cpu_batch.frames.shape
        assert np.array_equal(gpu_batch.timestamps_ms, cpu_batch.timestamps_ms)
        assert np.array_equal(gpu_batch.frame_numbers, cpu_batch.frame_numbers)
        diff = gpu_batch.frames.cpu().numpy().astype(np.int16) - cpu_batch.frames.astype(np.int16)
        assert np.abs(diff).mean() < 3.0


@pytest.mark.gpu
@needs_nvdec
def test_nvdec_counts_every_frame_and_rotates(rotated_video: Path, hamilton_video: Path):
    batcher = FrameBatcher(hamilton_video, backend="nvdec", sample_fps=0, batch_size=64)
    stamps = np.concatenate([b.timestamps_ms for b in batcher])
    assert len(stamps) == 275 and np.all(np.diff(stamps) > 0) and batcher.stats.decoded == 275
    frame = next(iter(FrameBatcher(rotated_video, backend="nvdec", sample_fps=0))).frames[0].cpu().numpy()
    assert frame.shape == (160, 96, 3)
    assert frame[:20, -12:].mean() > 200 and frame[:20, :12].mean() < 60


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: nvdec may run")
def test_nvdec_chosen_where_it_cannot_run_is_a_settings_error(hamilton_video: Path):
    """Issue 19 item 5: a decoder chosen by name that cannot run here was exit 9 with a traceback."""
    from analyzer.errors import SettingsError
    from analyzer.video.backend import open_reader

    with pytest.raises(
        SettingsError, match="^invalid setting ANALYZER_DECODER / --decoder: nvdec cannot run here: CUDA"
    ):
        open_reader("nvdec", hamilton_video, probe(hamilton_video))
