"""Where tensors go: one rule for every stage (trainer, hyperalignment, generators)."""

from __future__ import annotations

import torch

from hyperexp.errors import InputError


def resolve_device(device: str | torch.device | None = "auto", key: str = "trainer.device") -> torch.device:
    """'auto' (or None) -> CUDA when available, else CPU. An unknown device, or CUDA on a machine
    without it, is an InputError naming ``key``, so the user gets one line instead of a failure mid-run."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"{key}: unknown device {str(device)!r} (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"{key}: device {str(device)!r} is not supported (use auto, cpu, cuda or cuda:N)")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{key}: {str(device)!r} requested but CUDA is not available (use auto or cpu)")
    return resolved


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters or buffers (CPU for a module that has neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")
