"""Copies between host and GPU through one page-locked buffer that every batch reuses.

``tensor.pin_memory()`` per batch page-locks a fresh host block each time (or waits for one of
the caching host allocator's), and ``tensor.cpu()`` of a CUDA tensor copies into pageable
memory through the driver's own staging: both cost far more than the copy itself on the lent
H200 machine (see docs/performance.md). A buffer allocated page-locked once and reused turns
each transfer into one host memcpy plus one DMA.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PinnedBuffer"]


class PinnedBuffer:
    """A page-locked host buffer for one transfer at a time, grown when a bigger one comes.

    ``upload`` returns a device tensor whose copy may still be running; the next call waits for
    it (a CUDA event) before overwriting the buffer. ``download`` returns a host tensor that is
    valid until the next call: copy out whatever must outlive it.
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    def _staging(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        if self._buffer is None or self._buffer.dtype != dtype or self._buffer.numel() < numel:
            self._buffer = torch.empty(numel, dtype=dtype, pin_memory=True)
        elif self._copied is not None:
            self._copied.synchronize()  # the previous transfer still reads or writes the buffer
        return self._buffer[:numel].view(shape)

    def upload(self, host: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``host`` (a CPU tensor, any strides) on ``device``, through the buffer, not blocking."""
        staging = self._staging(host.shape, host.dtype)
        staging.copy_(host)
        on_device = staging.to(device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record(torch.cuda.current_stream(device))
        return on_device

    def download(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CUDA ``tensor``'s values on the host (a view of the buffer, valid until the next call)."""
        staging = self._staging(tensor.shape, tensor.dtype)
        staging.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(tensor.device).synchronize()
        self._copied = None
        return staging
