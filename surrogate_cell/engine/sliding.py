"""A time window that slides by one step in O(1) amortised time, with causal zero padding.

The incremental engine keeps, for every layer, the layer's values over the model window.
Each step the window drops its oldest step and gains a newest one. Copying the whole
window every step would cost as much memory traffic as the arithmetic it saves, so the
storage has ``slack`` spare steps after the window: advancing moves the window's start,
and the window is copied back to the beginning only when the spare steps run out.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SlidingWindow:
    """The last ``length`` steps of a signal along ``time_dim``, preceded by ``pad`` zero steps.

    ``shape`` is the full storage shape with the time axis given as ``length``; e.g.
    ``(batch, channels, length)`` with ``time_dim=-1``. :meth:`window` and :meth:`padded` are
    views into the storage. After :meth:`advance` the newest step holds stale values until the
    caller writes it; the ``pad`` steps before the window are always zero.
    """

    def __init__(self, shape: tuple[int, ...], time_dim: int, pad: int, slack: int,
                 device: torch.device, dtype: torch.dtype):
        self.time_dim = time_dim % len(shape)
        self.length = shape[self.time_dim]
        self.pad = pad
        storage_shape = list(shape)
        storage_shape[self.time_dim] = pad + self.length + max(slack, 1)
        self.storage = torch.zeros(storage_shape, device=device, dtype=dtype)
        self.start = pad

    @property
    def capacity(self) -> int:
        """Number of steps the storage holds (padding, window and slack)."""
        return self.storage.shape[self.time_dim]

    def window(self) -> Tensor:
        """View of the ``length`` window steps, oldest first."""
        return self.storage.narrow(self.time_dim, self.start, self.length)

    def padded(self) -> Tensor:
        """View of the window preceded by its ``pad`` zero steps."""
        return self.storage.narrow(self.time_dim, self.start - self.pad, self.pad + self.length)

    def newest(self) -> Tensor:
        """View of the newest step (time axis kept, of size 1)."""
        return self.storage.narrow(self.time_dim, self.start + self.length - 1, 1)

    def advance(self) -> None:
        """Drop the oldest step and open a newest one (stale until written)."""
        if self.pad:  # the dropped step becomes the last padding step
            self.storage.narrow(self.time_dim, self.start, 1).zero_()
        self.start += 1
        if self.start + self.length > self.capacity:
            self._move_to_front()

    def _move_to_front(self) -> None:
        """Copy padding and window (minus the stale newest step) back to the storage start."""
        kept = self.pad + self.length - 1
        source = self.storage.narrow(self.time_dim, self.start - self.pad, kept).clone()
        self.storage.narrow(self.time_dim, 0, kept).copy_(source)
        self.start = self.pad
