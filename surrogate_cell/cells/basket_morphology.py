"""A deterministic, project-generated morphology of a fast-spiking (PV) basket cell.

The shape is schematic but in the range of hippocampal/neocortical PV basket cells:
a 15 um spherical soma and five aspiny dendrites that leave it in different directions,
each branching once or twice, with diameters tapering from 1.5 um at the soma to 0.5 um at
the most distant tips, about 2200 um of dendrite in total and a radial extent of about
300 um. There is **no axon**: the cell is meant as a simple second cell type whose spikes
are initiated in the soma, and an axon would only add segments without synaptic input.

The geometry is fixed (no randomness), so :func:`basket_morphology_swc` always returns
the same text; ``surrogate_cell/training/configs/cells/basket/basket.swc`` is its output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOMA_DIAMETER_UM = 15.0
"""Diameter of the spherical soma (written as a NeuroMorpho three-point soma)."""

PROXIMAL_DIAMETER_UM = 1.5
"""Dendritic diameter where a dendrite leaves the soma."""

DISTAL_DIAMETER_UM = 0.5
"""Dendritic diameter at the most distant tip (path distance :data:`TAPER_LENGTH_UM`)."""

TAPER_LENGTH_UM = 300.0
"""Path distance from the soma surface over which the diameter tapers linearly."""

POINT_SPACING_UM = 10.0
"""Largest distance between consecutive SWC points along a branch."""

BRANCH_ANGLE_DEG = 35.0
"""Angle between a parent branch and each of its two daughters."""

# Each dendrite: (polar angle, azimuth) of its initial direction in degrees, and its tree
# as (length_um, [daughter trees]). Dendrites A and C branch twice, the others once.
_DENDRITES: tuple = (
    ((60.0, 0.0), (60.0, [(140.0, [(100.0, []), (100.0, [])]), (160.0, [])])),
    ((100.0, 72.0), (50.0, [(170.0, []), (150.0, [])])),
    ((80.0, 144.0), (70.0, [(120.0, [(110.0, []), (90.0, [])]), (150.0, [])])),
    ((120.0, 216.0), (40.0, [(160.0, []), (180.0, [])])),
    ((70.0, 288.0), (60.0, [(150.0, []), (130.0, [])])),
)


def _unit(polar_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit vector from spherical angles in degrees."""
    polar, azimuth = np.radians(polar_deg), np.radians(azimuth_deg)
    return np.array([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)])


def _rotate(vector: np.ndarray, axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate ``vector`` about the unit ``axis`` by ``angle_deg`` (Rodrigues' formula)."""
    angle = np.radians(angle_deg)
    return (vector * np.cos(angle) + np.cross(axis, vector) * np.sin(angle)
            + axis * np.dot(axis, vector) * (1.0 - np.cos(angle)))


def _branch_axis(direction: np.ndarray, depth: int) -> np.ndarray:
    """Axis about which the daughters of a branch at ``depth`` are rotated.

    Alternating the reference vector with depth puts successive bifurcations in
    different planes, so the tree fills space instead of lying in one plane.
    """
    reference = np.array([0.0, 0.0, 1.0]) if depth % 2 == 0 else np.array([1.0, 0.0, 0.0])
    axis = np.cross(direction, reference)
    if np.linalg.norm(axis) < 1e-6:
        axis = np.cross(direction, np.array([0.0, 1.0, 0.0]))
    return axis / np.linalg.norm(axis)


def _diameter(path_um: float) -> float:
    """Dendritic diameter at path distance ``path_um`` from the soma surface."""
    fraction = min(path_um / TAPER_LENGTH_UM, 1.0)
    return PROXIMAL_DIAMETER_UM + (DISTAL_DIAMETER_UM - PROXIMAL_DIAMETER_UM) * fraction


def _soma_rows() -> list[tuple]:
    """Three-point soma: centre, then two points one radius away along y."""
    r = SOMA_DIAMETER_UM / 2
    return [(1, 1, 0.0, 0.0, 0.0, r, -1), (2, 1, 0.0, -r, 0.0, r, 1), (3, 1, 0.0, r, 0.0, r, 1)]


def _grow(rows: list[tuple], tree: tuple, start: np.ndarray, direction: np.ndarray,
          parent_id: int, path_um: float, depth: int) -> None:
    """Append the SWC rows of ``tree`` (a straight branch and its daughters) to ``rows``."""
    length, daughters = tree
    n_steps = int(np.ceil(length / POINT_SPACING_UM))
    for step in range(1, n_steps + 1):
        distance = length * step / n_steps
        point = start + direction * distance
        row_id = len(rows) + 1
        rows.append((row_id, 3, *point, _diameter(path_um + distance) / 2, parent_id))
        parent_id = row_id
    end = start + direction * length
    axis = _branch_axis(direction, depth)
    for sign, daughter in zip((1.0, -1.0), daughters):
        _grow(rows, daughter, end, _rotate(direction, axis, sign * BRANCH_ANGLE_DEG),
              parent_id, path_um + length, depth + 1)


def basket_morphology_swc() -> str:
    """SWC text of the project's basket-cell morphology.

    Returns
    -------
    str
        SWC lines ``id type x y z radius parent`` (um): a three-point soma (type 1,
        diameter :data:`SOMA_DIAMETER_UM`) and five tapering, branching dendrites
        (type 3), each starting on the soma surface and attached to the soma centre
        point. No axon. The text is the same on every call.
    """
    rows = _soma_rows()
    for (polar, azimuth), tree in _DENDRITES:
        direction = _unit(polar, azimuth)
        root = len(rows)
        # The first dendritic point sits on the soma surface; _grow adds points beyond it.
        start = direction * SOMA_DIAMETER_UM / 2
        rows.append((root + 1, 3, *start, PROXIMAL_DIAMETER_UM / 2, 1))
        _grow(rows, tree, start, direction, root + 1, 0.0, 0)
    lines = [
        "# Fast-spiking basket cell, schematic morphology generated by",
        "# surrogate_cell.cells.basket_morphology (no axon). Units: um.",
        "# id type x y z radius parent",
    ]
    lines += [f"{i} {t} {x:.3f} {y:.3f} {z:.3f} {r:.4f} {p}" for i, t, x, y, z, r, p in rows]
    return "\n".join(lines) + "\n"


def write_basket_morphology(path: str | Path) -> Path:
    """Write :func:`basket_morphology_swc` to ``path``.

    Parameters
    ----------
    path : str or Path
        Destination file; its parent folder must exist.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.write_text(basket_morphology_swc())
    return path
