"""Where tensors go: one rule for every stage (trainer, hyperalignment, generators)."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> CUDA when available, else CPU. Asking for CUDA on a machine without
    it is a ValueError, so the user gets one clear line instead of a failure mid-run."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available (use auto or cpu)")
    return resolved


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters or buffers (CPU for a module that has neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")
