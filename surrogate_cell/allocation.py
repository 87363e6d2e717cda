"""A ceiling on the memory that building a model from an untrusted configuration may take.

A checkpoint's ``model_config`` decides the sizes of the tensors its model allocates; a
corrupt or hostile one (``hidden: 10000000``) would make the loader try to allocate terabytes
before any check on the weights could run. :class:`AllocationLimit` watches the torch calls
made while the model is built: a call that creates a tensor of a size given by its arguments
(``torch.empty``, ``zeros``, ``randperm``, ``Tensor.new_zeros``, ``repeat``, ...) is first made
on the ``meta`` device (shapes only, no data), and refused with
:class:`AllocationLimitExceeded` before it runs for real if its output would pass the limit.
Every other call's new tensors are counted once they exist (they derive from tensors already
counted). Views and in-place operations are not counted; temporaries are counted as if they
were kept, so the total is an upper bound on what the build holds at once.

It is a ``TorchFunctionMode`` (Python-level, cheap to enter), not a dispatch mode, whose first
use would import ``torch._dynamo`` (seconds).
"""

from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

META = torch.device("meta")

SIZED_FACTORIES = frozenset({
    torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn,
    torch.randint, torch.randperm, torch.arange, torch.eye, torch.linspace, torch.logspace,
})
"""Functions that create a tensor of a size given by plain arguments (made on ``meta`` first)."""

SIZED_METHODS = frozenset({
    torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_full,
    torch.Tensor.repeat, torch.tile, torch.repeat_interleave, torch.Tensor.repeat_interleave,
})
"""Functions of a tensor whose output size is given by plain arguments (made on ``meta`` first)."""


class AllocationLimitExceeded(MemoryError):
    """Building a model would allocate more than the :class:`AllocationLimit` allows."""


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in ``value`` (any nesting of tensors and other objects)."""
    leaves, _ = tree_flatten(value)
    return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]


def _as_meta(value):
    """``value`` with every tensor replaced by a data-less ``meta`` tensor of the same layout."""
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=META)
    if isinstance(value, torch.device):
        return META
    return value


def _arange_numel(args, kwargs: dict) -> int:
    """Number of elements of ``torch.arange(*args, **kwargs)``."""
    names = ("start", "end", "step") if len(args) > 1 or "end" in kwargs else ("end",)
    values = {**dict(zip(names, args)), **{name: kwargs[name] for name in ("start", "end", "step") if name in kwargs}}
    start, end, step = (float(values.get(name, default)) for name, default in (("start", 0), ("end", 0), ("step", 1)))
    return max(0, math.ceil((end - start) / step)) if step else 0


def _eye_numel(args, kwargs: dict) -> int:
    """Number of elements of ``torch.eye(*args, **kwargs)``."""
    rows = int(args[0] if args else kwargs["n"])
    columns = args[1] if len(args) > 1 and not isinstance(args[1], torch.Tensor) else kwargs.get("m")
    return rows * (rows if columns is None else int(columns))


COUNTED_DIRECTLY = {torch.arange: _arange_numel, torch.eye: _eye_numel}
"""Factories whose ``meta`` versions are Python references (their first use imports torch._dynamo):
their element counts are worked out from the arguments instead."""


def _meta_bytes(func, args, kwargs: dict) -> int:
    """Bytes of the outputs of a sized factory or method ``func``, made on the ``meta`` device."""
    if func in COUNTED_DIRECTLY:
        dtype = kwargs.get("dtype")
        return COUNTED_DIRECTLY[func](args, kwargs) * (8 if dtype is None else dtype.itemsize)
    meta_args, meta_kwargs = tree_map(_as_meta, args), tree_map(_as_meta, dict(kwargs))
    meta_kwargs.pop("generator", None)  # a generator lives on the CPU
    if func in SIZED_FACTORIES:
        meta_kwargs["device"] = META
    return _bytes(_tensors(func(*meta_args, **meta_kwargs)))


def _bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes that ``tensors`` take."""
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def _storage(tensor: torch.Tensor) -> int | None:
    """The address of ``tensor``'s storage (None where it has none, e.g. on ``meta``)."""
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


class AllocationLimit(TorchFunctionMode):
    """Context manager: tensors created inside may take at most ``limit_bytes`` in all.

    Parameters
    ----------
    limit_bytes : int
        The most bytes that all tensors created inside may take together.

    Attributes
    ----------
    allocated_bytes : int
        Bytes counted so far.

    Raises
    ------
    AllocationLimitExceeded
        From a sized factory (``torch.empty``, ...) that would pass the limit, before it runs;
        or from any other call once its outputs have passed it.

    Examples
    --------
    >>> with AllocationLimit(1 << 20):
    ...     small = torch.zeros(1000)
    >>> with AllocationLimit(1 << 20):  # doctest: +SKIP
    ...     torch.zeros(10 ** 12)  # AllocationLimitExceeded, nothing allocated
    """

    def __init__(self, limit_bytes: int):
        super().__init__()
        self.limit_bytes = int(limit_bytes)
        self.allocated_bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        """Count what ``func`` creates: sized factories before they run, other calls after."""
        kwargs = kwargs or {}
        if func in SIZED_FACTORIES or func in SIZED_METHODS:
            self._count(_meta_bytes(func, args, kwargs), func)
            return func(*args, **kwargs)
        inputs = {_storage(tensor) for tensor in _tensors((args, kwargs))}
        result = func(*args, **kwargs)
        created = [tensor for tensor in _tensors(result) if _storage(tensor) not in inputs]
        if created:
            self._count(_bytes(created), func)
        return result

    def _count(self, n_bytes: int, func) -> None:
        """Add ``n_bytes``; raise if the total passes the limit."""
        self.allocated_bytes += n_bytes
        if self.allocated_bytes > self.limit_bytes:
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", str(func))
            raise AllocationLimitExceeded(
                f"{name} would bring the allocated memory to {self.allocated_bytes / 2 ** 20:.1f} MiB, "
                f"over the limit of {self.limit_bytes / 2 ** 20:.1f} MiB.")
