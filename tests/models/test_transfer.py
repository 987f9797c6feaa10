"""The reused page-locked buffer: values survive the copy back, whatever the size or strides."""

from __future__ import annotations

import pytest
import torch

from models.transfer import PinnedBuffer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_download_reuses_and_grows() -> None:
    buffer = PinnedBuffer()
    for shape in [(2, 8, 8, 3), (1, 8, 8, 3), (4, 16, 16, 3)]:  # smaller reuses, bigger grows
        on_device = torch.randint(0, 256, shape, dtype=torch.uint8, device="cuda")
        host = buffer.download(on_device)
        assert host.is_pinned() and torch.equal(host, on_device.cpu())


def test_download_of_a_strided_tensor() -> None:
    on_device = torch.arange(24, device="cuda").reshape(4, 6).t()
    assert torch.equal(PinnedBuffer().download(on_device), on_device.cpu())
