"""The voltage normalisation a model is trained and run with (stored in every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MIN_STD_MV = 0.1
"""Floor of a segment's voltage standard deviation (mV), so a flat segment cannot divide by 0."""


@dataclass
class Normalisation:
    """Per-segment voltage z-scoring ``z = (v - mean) / std``, and the range seen in training.

    ``low``/``high`` (mV per segment, optional) bound the voltages a free run may predict:
    fed back, a voltage outside everything the model was trained on only produces worse
    extrapolations, and a voltage-input model can run away that way.
    """

    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    @classmethod
    def fit(cls, voltages: np.ndarray) -> Normalisation:
        """Statistics over sims and time of a (n_sims, n_segments, T) voltage array."""
        mean = voltages.mean(axis=(0, 2), dtype=np.float64)
        std = np.maximum(voltages.std(axis=(0, 2), dtype=np.float64), MIN_STD_MV)
        return cls(mean.astype(np.float32), std.astype(np.float32),
                   voltages.min(axis=(0, 2)).astype(np.float32), voltages.max(axis=(0, 2)).astype(np.float32))

    def z_bounds(self, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(low, high) in z units as tensors, or None when no range is known."""
        if self.low is None or self.high is None:
            return None
        return tuple(torch.as_tensor((mv - self.mean) / self.std, device=device, dtype=dtype)
                     for mv in (self.low, self.high))

    def to_z(self, voltages):
        """mV -> z-scores; segments on the second-to-last axis of numpy arrays, last of tensors."""
        if isinstance(voltages, torch.Tensor):
            return (voltages - torch.as_tensor(self.mean)) / torch.as_tensor(self.std)
        return (voltages - self.mean[:, None]) / self.std[:, None]

    def to_mv(self, z: torch.Tensor) -> torch.Tensor:
        """z-scores (segments on the last axis) -> mV."""
        return z * torch.as_tensor(self.std, device=z.device) + torch.as_tensor(self.mean, device=z.device)
