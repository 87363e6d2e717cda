"""Where a surrogate runs: the one place that picks a torch device and precision."""

from __future__ import annotations

import torch

SUPPORTED_DTYPES = {"float32": torch.float32, "float64": torch.float64,
                    "float16": torch.float16, "bfloat16": torch.bfloat16}
CUDA_ONLY_DTYPES = (torch.float16, torch.bfloat16)


class DeviceError(ValueError):
    """The requested torch device or precision is unavailable or unsupported."""


AUTO = "auto"
"""The device name that means: this process's CUDA device when there is one, else the CPU."""


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device``; ``None`` or ``"auto"``: this process's current CUDA device when available (the
    one ``torchrun`` assigned), else the CPU. Asking for CUDA without it is a :class:`DeviceError`."""
    if device is None or device == AUTO:
        return torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device={device!r} is not a torch device; use 'cpu' or 'cuda' "
                          "(or 'cuda:<index>').") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={device!r} was requested but CUDA is not available in this "
                          "torch installation; use device='cpu' or leave device unset.")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise DeviceError(f"device={device!r} was requested but there are only "
                          f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 ...); choose one of them.")
    return chosen


def select_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 by default; float16/bfloat16 only on CUDA; float64 anywhere."""
    if dtype is None:
        return torch.float32
    name = str(dtype).removeprefix("torch.")
    if name not in SUPPORTED_DTYPES:
        raise DeviceError(f"dtype={dtype!r} is not supported; choose one of {sorted(SUPPORTED_DTYPES)}.")
    chosen = SUPPORTED_DTYPES[name]
    if chosen in CUDA_ONLY_DTYPES and device.type != "cuda":
        raise DeviceError(f"dtype={name} is only supported on CUDA (device is {device}); "
                          "use float32 on the CPU.")
    return chosen
