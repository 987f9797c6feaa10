"""The pipeline's resource policy: batch size under the host-memory cap, torch threads beside the decoder."""

from __future__ import annotations

import pytest
import torch

from analyzer.analysis.pipeline import BATCHES_IN_FLIGHT, CUDA_TORCH_THREADS, fit_batch_size, leave_cpus_to_the_decoder


def test_batch_size_fits_the_host_buffer():
    frame_mib = 1920 * 1080 * 3 / 2**20
    assert fit_batch_size(32, 1920, 1080, 1024) == 32  # 32 x 4 x 5.9 MiB = 759 MiB
    assert fit_batch_size(32, 3840, 2160, 1024) == int(1024 // (4 * frame_mib * BATCHES_IN_FLIGHT))
    assert fit_batch_size(32, 7680, 4320, 16) == 1  # never below one frame


def test_torch_keeps_its_threads_on_cpu_and_gives_them_up_on_cuda_until_the_end():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with leave_cpus_to_the_decoder(torch.device("cpu")):
            assert torch.get_num_threads() == 2
        with leave_cpus_to_the_decoder(torch.device("cuda")):
            assert torch.get_num_threads() == CUDA_TORCH_THREADS
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), leave_cpus_to_the_decoder(torch.device("cuda")):
            raise RuntimeError("analysis failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
