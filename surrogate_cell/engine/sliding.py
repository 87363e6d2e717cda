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
        self._move_start(pad)

    @property
    def capacity(self) -> int:
        """Number of steps the storage holds (padding, window and slack)."""
        return self.storage.shape[self.time_dim]

    def window(self) -> Tensor:
        """View of the ``length`` window steps, oldest first."""
        return self._window

    def padded(self) -> Tensor:
        """View of the window preceded by its ``pad`` zero steps."""
        return self._padded

    def newest(self) -> Tensor:
        """View of the newest step (time axis kept, of size 1)."""
        return self._newest

    def advance(self) -> None:
        """Drop the oldest step and open a newest one (stale until written)."""
        if self.pad:  # the dropped step becomes the last padding step
            self._window.narrow(self.time_dim, 0, 1).zero_()
        if self.start + 1 + self.length > self.capacity:
            self._move_to_front()
        else:
            self._move_start(self.start + 1)

    def _move_to_front(self) -> None:
        """Copy padding and window (minus the oldest step) back to the storage start."""
        kept = self.pad + self.length - 1
        source = self.storage.narrow(self.time_dim, self.start + 1 - self.pad, kept).clone()
        self.storage.narrow(self.time_dim, 0, kept).copy_(source)
        self._move_start(self.pad)

    def _move_start(self, start: int) -> None:
        """Place the window at storage step ``start`` (views are cached: they are read often)."""
        self.start = start
        self._window = self.storage.narrow(self.time_dim, start, self.length)
        self._padded = self.storage.narrow(self.time_dim, start - self.pad, self.pad + self.length)
        self._newest = self.storage.narrow(self.time_dim, start + self.length - 1, 1)
