"""Products with a fixed weight matrix, on the fastest CPU kernel for the expected row count.

On this project's CPUs (AMD EPYC) torch's default float32 matrix product (MKL) is slow for
the short, wide products of stepping (a few to a few hundred rows times a 20-50 MB weight):
it re-packs the weight at every call. oneDNN's linear with a weight packed once is 1.5-2x
faster there (measured at 5-500 rows on the paper-size tower and gate weights); for a
single row MKL's matrix-vector product is faster. oneDNN is used through the operators torch's own compiler (Inductor)
uses for frozen linear layers; without them (other builds, float64, GPU) this falls back
to ``torch.matmul``.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_PACKED_ROWS = 2
"""Row counts from which the packed oneDNN product beats MKL (measured, see module docstring)."""


def onednn_linear_available(weight: Tensor) -> bool:
    """Whether the packed oneDNN linear operators can multiply by ``weight``."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        for name in ("_reorder_linear_weight", "_linear_pointwise"):
            getattr(torch.ops.mkldnn, name)  # raises when this torch build lacks the operator
    except (AttributeError, RuntimeError):
        return False
    return True


class DenseProduct:
    """``x @ weight + bias`` for a fixed ``weight`` (in, out) and optional ``bias`` (out,).

    ``rows`` is the number of rows ``x`` will usually have; it picks the kernel and sizes the
    packed weight (other row counts still work).
    """

    def __init__(self, weight: Tensor, rows: int, bias: Tensor | None = None):
        self.in_features, self.out_features = weight.shape
        self.bias = None if bias is None else bias.contiguous()
        self.weight, self.packed = weight.contiguous(), None
        if rows >= MIN_PACKED_ROWS and onednn_linear_available(weight):
            self.packed = _packed_or_none(self.weight, rows)
        if self.packed is not None:
            self.weight = None  # the packed copy replaces it (the tower weights are ~50 MB)

    def __call__(self, x: Tensor) -> Tensor:
        """(rows, in) -> (rows, out)."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias,
                                                      "none", [], "")
        if self.bias is None:
            return x @ self.weight
        return torch.addmm(self.bias, x, self.weight)

    def flops_per_row(self) -> int:
        """Multiply-adds counted as two FLOPs, per row of ``x``."""
        return 2 * self.in_features * self.out_features


def _packed_or_none(weight: Tensor, rows: int) -> Tensor | None:
    """``weight`` (in, out) packed for oneDNN's linear, or ``None`` if oneDNN refuses it."""
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous(), rows)
    except RuntimeError:
        return None
