"""The reused page-locked buffer: values survive the round trip, and reuse never corrupts a copy in flight."""

from __future__ import annotations

import pytest
import torch

from models.transfer import PinnedBuffer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_round_trip_and_growth() -> None:
    buffer = PinnedBuffer()
    for shape in [(2, 8, 8, 3), (1, 8, 8, 3), (4, 16, 16, 3)]:  # smaller reuses, bigger grows
        host = torch.randint(0, 256, shape, dtype=torch.uint8)
        on_device = buffer.upload(host, torch.device("cuda"))
        assert on_device.is_cuda and torch.equal(on_device.cpu(), host)
        assert torch.equal(PinnedBuffer().download(on_device), host)


def test_back_to_back_uploads_keep_their_own_values() -> None:
    buffer = PinnedBuffer()
    first_host = torch.full((32, 540, 960, 3), 7, dtype=torch.uint8)
    second_host = torch.full((32, 540, 960, 3), 9, dtype=torch.uint8)
    first = buffer.upload(first_host, torch.device("cuda"))  # still copying when the second comes
    second = buffer.upload(second_host, torch.device("cuda"))
    torch.cuda.synchronize()
    assert bool((first == 7).all()) and bool((second == 9).all())


def test_download_of_a_strided_tensor() -> None:
    on_device = torch.arange(24, device="cuda").reshape(4, 6).t()
    assert torch.equal(PinnedBuffer().download(on_device), on_device.cpu())
