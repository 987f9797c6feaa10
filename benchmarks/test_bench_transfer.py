"""Copies of a batch of frames between host and GPU, and the models on fresh vs reused arrays.

The pipeline hands the models a new host array per batch (the decoder's), while the models-only
benchmark reuses one, and the pipeline ran ~50 ms per 1080p frame slower than the models alone on
the lent H200. These cases pin down where (it was neither: see test_analyze_changing_face_counts
and docs/performance.md): 32 frames of the 1080p walking clip (200 MB), each round on
a fresh copy made outside the timing ("fresh") or on the same array ("same"), with torch on one
CPU thread (the worker's policy on CUDA) or on all of them:

- upload ``pin_memory``: ``from_numpy(frames).pin_memory().to(cuda, non_blocking=True)`` (the old path);
- upload ``pinned_buffer``: a copy into one page-locked buffer, reused, then a non-blocking copy;
- upload ``pageable``: ``from_numpy(frames).to(cuda)`` (the path now: fastest on one thread);
- download ``cpu`` vs ``pinned_buffer``: the batch back to the host (the NVDEC path's tracker frames);
- ``analyze``: FaceAnalyzer.analyze on fresh vs same arrays, and on batches whose face counts change
  (cuDNN prepares each new input shape once), with and without padding the crops.

Each time includes a device synchronisation. CUDA only; run: pytest benchmarks/test_bench_transfer.py
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from benchmarks.test_bench_models import MODELS_DIR, NUM_FRAMES, VIDEO, read_frames
from models import face_analyzer
from models.face_analyzer import FaceAnalyzer
from models.transfer import PinnedBuffer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
ROUNDS = 6
CUDA = torch.device("cuda")
RESULTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return read_frames(VIDEO, NUM_FRAMES)


@contextmanager
def torch_threads(threads: str) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1 if threads == "1" else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pin_memory(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).pin_memory().to(CUDA, non_blocking=True)


def _pageable(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).to(CUDA)


def _measure(benchmark, name: str, frames: np.ndarray, source: str, run: Callable[[np.ndarray], object]) -> None:
    """Time ``run`` (synchronised) over ROUNDS rounds, each on a fresh copy or the same array."""

    def setup() -> tuple[tuple[np.ndarray], dict]:
        return ((frames.copy() if source == "fresh" else frames),), {}

    def timed(batch: np.ndarray) -> None:
        run(batch)
        torch.cuda.synchronize()

    run(frames)  # warm-up: kernels, allocator, the buffer
    torch.cuda.synchronize()
    benchmark.pedantic(timed, setup=setup, rounds=ROUNDS, iterations=1)
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["ms_per_batch"] = round(median * 1000, 2)
    RESULTS[name] = (
        f"{name:45} {median * 1000:8.1f} ms per {NUM_FRAMES} frames ({frames.nbytes / median / 1e9:.1f} GB/s)"
    )


@pytest.fixture(scope="module", autouse=True)
def report(bench_summary: dict[str, list[str]]) -> Iterator[None]:
    yield
    bench_summary[f"host <-> GPU transfers, {torch.cuda.get_device_name()}"] = list(RESULTS.values())


@pytest.mark.parametrize("threads", ["1", "all"])
@pytest.mark.parametrize("source", ["fresh", "same"])
@pytest.mark.parametrize("path", ["pin_memory", "pinned_buffer", "pageable"])
def test_upload(benchmark, frames: np.ndarray, path: str, source: str, threads: str) -> None:
    staging = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)

    def pinned_buffer(batch: np.ndarray) -> torch.Tensor:  # a page-locked buffer allocated once, reused
        staging.copy_(torch.from_numpy(batch))
        return staging.to(CUDA, non_blocking=True)

    run = {"pin_memory": _pin_memory, "pageable": _pageable, "pinned_buffer": pinned_buffer}[path]
    with torch_threads(threads):
        _measure(benchmark, f"upload {path}, {source} array, {threads} thread(s)", frames, source, run)


@pytest.mark.parametrize("path", ["cpu", "pinned_buffer"])
def test_download(benchmark, frames: np.ndarray, path: str) -> None:
    on_device = torch.from_numpy(frames).to(CUDA)
    buffer = PinnedBuffer()
    run = (lambda _: on_device.cpu()) if path == "cpu" else (lambda _: buffer.download(on_device))
    with torch_threads("1"):
        _measure(benchmark, f"download {path}, 1 thread(s)", frames, "same", run)
    np.testing.assert_array_equal(
        buffer.download(on_device).numpy() if path != "cpu" else on_device.cpu().numpy(), frames
    )


@pytest.mark.parametrize("threads", ["1", "all"])
@pytest.mark.parametrize("source", ["fresh", "same"])
def test_analyze(benchmark, frames: np.ndarray, source: str, threads: str) -> None:
    analyzer = FaceAnalyzer(MODELS_DIR, device="cuda")
    with torch_threads(threads):
        _measure(benchmark, f"analyze, {source} array, {threads} thread(s)", frames, source, analyzer.analyze)


@pytest.mark.parametrize("bucket", [32, 1])
def test_analyze_changing_face_counts(
    benchmark, frames: np.ndarray, bucket: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches whose frame and face counts differ, twice: the first pass pays cuDNN's set-up for
    every new input shape (1.5 s a batch on the H200 with its v8 API), the second finds it cached.
    Padding the crops to a multiple of 32 faces (the default) leaves few classifier shapes; bucket
    1 is the unpadded path; the frame count still changes the detector's. The frame subsets differ
    between the two cases so that neither finds the other's shapes."""
    monkeypatch.setattr(face_analyzer, "CUDA_FACE_BUCKET", bucket)
    analyzer = FaceAnalyzer(MODELS_DIR, device="cuda")
    sizes = range(31, 23, -1) if bucket == 32 else range(23, 15, -1)
    batches = [np.ascontiguousarray(frames[:size]) for size in sizes]

    def one_pass() -> None:
        for batch in batches:
            analyzer.analyze(batch)
        torch.cuda.synchronize()

    benchmark.pedantic(one_pass, rounds=2, iterations=1)
    if benchmark.stats is None:
        return
    first, second = benchmark.stats.stats.max, benchmark.stats.stats.min
    benchmark.extra_info.update(first_pass_s=round(first, 3), second_pass_s=round(second, 3))
    RESULTS[f"shapes {bucket}"] = (
        f"analyze {len(batches)} batches, faces padded to x{bucket}: first pass "
        f"{first * 1000 / len(batches):.1f} ms/batch, second {second * 1000 / len(batches):.1f}"
    )
