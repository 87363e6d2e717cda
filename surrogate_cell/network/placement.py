"""Random soma positions and rotations for populations (the kind ``LFPy.Network`` draws)."""

from __future__ import annotations

import numpy as np


def cylinder_positions(n_cells: int, radius_um: float, z_range_um: tuple[float, float],
                       rng: np.random.Generator) -> np.ndarray:
    """(n_cells, 3) soma positions uniform in a vertical cylinder (radius, z from/to) in um."""
    radius = radius_um * np.sqrt(rng.uniform(0.0, 1.0, n_cells))
    angle = rng.uniform(0.0, 2 * np.pi, n_cells)
    z = rng.uniform(z_range_um[0], z_range_um[1], n_cells)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle), z])


def z_rotations(n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """(n_cells, 3) rotations (radians about x, y, z): uniform about the z (apical) axis only."""
    return np.column_stack([np.zeros(n_cells), np.zeros(n_cells), rng.uniform(0.0, 2 * np.pi, n_cells)])
