"""Diversity of experts and gates of the mixture-of-experts families (MMoE, MMoEEx and their stable forms).

Measured as in the MMoEEx paper (Aoki, Tung & Oliveira 2021) on a batch of windows, for every
family whose registry entry has ``has_experts`` (its model has ``gates_and_experts``):

- **Expert diversity.** ``D[i, j]``: the Euclidean distance between the outputs of experts
  ``i`` and ``j`` on the same window, averaged over the windows and scaled to [0, 1] by its
  largest entry. Reported: the mean off-diagonal distance (``score``; 0 when all experts
  compute the same), the ``determinant`` and the ``permanent`` of ``D``.
- **Gate diversity.** The same three measures of the distances between the experts' gate
  weights over all tasks (expert ``i``'s column of the (tasks x experts) gate matrix): 0
  when every task weighs every expert alike.
- **Gate usage.** Every expert's mean gate weight over the windows and tasks (its share of
  all gate weight), the largest share and the mean normalised gate entropy (1: uniform
  gates, 0: every task uses one expert). Gates **collapse** when one expert takes more than
  :data:`GATE_COLLAPSE_SHARE` of all gate weight: the mixture has become one expert (hard
  parameter sharing); :func:`warn_if_collapsed` says so.

``train`` logs these at every evaluation (``metrics.csv``), ``evaluate`` reports them.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import torch
from torch import Tensor

from surrogate_cell.models import family_of

GATE_COLLAPSE_SHARE = 0.9
"""A larger share of all gate weight on one expert is reported as collapsed gates."""

SCORE_NAMES = {"score": "score", "determinant": "det", "permanent": "perm"}
"""Diversity scores and their short names in metrics.csv columns."""


def permanent(matrix: np.ndarray) -> float:
    """Permanent of a small square matrix (Ryser's formula; fine for a handful of experts)."""
    n = matrix.shape[0]
    total = 0.0
    for size in range(1, n + 1):
        for columns in itertools.combinations(range(n), size):
            total += (-1) ** size * np.prod(matrix[:, columns].sum(axis=1))
    return float((-1) ** n * total)


def pairwise_distances(outputs: Tensor) -> np.ndarray:
    """(K, K) mean over the batch of the Euclidean distances between the K rows of ``outputs``
    (batch, K, features), scaled to [0, 1] by its largest entry (all zeros if the rows agree)."""
    distances = torch.cdist(outputs.double(), outputs.double()).mean(dim=0)
    largest = distances.max()
    return (distances / largest if largest > 0 else distances).numpy()


def diversity_scores(distances: np.ndarray) -> dict:
    """``score`` (mean off-diagonal entry), ``determinant`` and ``permanent`` of a (K, K) distance matrix."""
    n = distances.shape[0]
    off_diagonal = distances[~np.eye(n, dtype=bool)]
    return {"score": float(off_diagonal.mean()) if off_diagonal.size else 0.0,
            "determinant": float(np.linalg.det(distances)), "permanent": permanent(distances)}


def gate_usage(gates: Tensor) -> dict:
    """Gate weights (batch, tasks, experts) -> every expert's share of all gate weight, the
    largest share, its expert, and the mean gate entropy over experts divided by log(K)."""
    gates = gates.double()
    share = gates.mean(dim=(0, 1))
    n_experts = gates.shape[-1]
    entropy = -(gates * torch.log(gates.clamp_min(1e-300))).sum(dim=-1).mean()
    return {"expert_share": share.tolist(), "largest_share": float(share.max()),
            "dominant_expert": int(share.argmax()),
            "normalised_entropy": float(entropy / math.log(n_experts)) if n_experts > 1 else 0.0}


@torch.no_grad()
def mixture_diagnostics(model, x: Tensor) -> dict | None:
    """Expert diversity, gate diversity and gate usage of ``model`` on model inputs ``x``.

    Parameters
    ----------
    model : torch.nn.Module
        A model of any registered family (unwrapped from DistributedDataParallel here).
    x : torch.Tensor
        Model inputs (batch, in_channels, window).

    Returns
    -------
    dict or None
        ``{"expert_diversity": {score, determinant, permanent}, "gate_diversity": {...},
        "gate_usage": {expert_share, largest_share, dominant_expert, normalised_entropy}}``
        (evaluation mode, no dropout); None for a family without experts.
    """
    model = getattr(model, "module", model)
    if not family_of(model).has_experts:
        return None
    was_training = model.training
    model.eval()
    gates, experts = model.gates_and_experts(x)
    model.train(was_training)
    gates, experts = gates.float().cpu(), experts.float().cpu()
    return {"expert_diversity": diversity_scores(pairwise_distances(experts)),
            "gate_diversity": diversity_scores(pairwise_distances(gates.transpose(1, 2))),
            "gate_usage": gate_usage(gates)}


def collapse_message(diagnostics: dict | None, where: str) -> str | None:
    """A sentence naming the expert that took more than :data:`GATE_COLLAPSE_SHARE` of the gate
    weight (``where``: e.g. "at step 200"), or None when the gates have not collapsed."""
    if diagnostics is None:
        return None
    usage = diagnostics["gate_usage"]
    if usage["largest_share"] <= GATE_COLLAPSE_SHARE:
        return None
    return (f"gates collapsed {where}: expert {usage['dominant_expert']} takes "
            f"{100 * usage['largest_share']:.1f} % of all gate weight (over {100 * GATE_COLLAPSE_SHARE:.0f} %), "
            "so the mixture acts as one expert; try a smaller learning rate, gate_bias: false or "
            "another seed")


def warn_if_collapsed(diagnostics: dict | None, where: str) -> str | None:
    """:func:`collapse_message`, also issued as a ``UserWarning``; returns it (None if not collapsed)."""
    message = collapse_message(diagnostics, where)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=2)
    return message


def diagnostic_columns(n_experts: int) -> tuple[str, ...]:
    """The metrics.csv columns of :func:`flat_diagnostics` for a model with ``n_experts`` experts."""
    scores = tuple(f"{kind}_diversity_{short}" for kind in ("expert", "gate") for short in SCORE_NAMES.values())
    return scores + ("gate_largest_share", "gate_entropy") + tuple(f"gate_share_{e}" for e in range(n_experts))


def flat_diagnostics(diagnostics: dict) -> dict[str, float]:
    """:func:`mixture_diagnostics` as one number per :func:`diagnostic_columns` column."""
    usage = diagnostics["gate_usage"]
    flat = {f"{kind}_diversity_{short}": diagnostics[f"{kind}_diversity"][name]
            for kind in ("expert", "gate") for name, short in SCORE_NAMES.items()}
    flat.update({"gate_largest_share": usage["largest_share"], "gate_entropy": usage["normalised_entropy"]})
    flat.update({f"gate_share_{e}": share for e, share in enumerate(usage["expert_share"])})
    return flat
