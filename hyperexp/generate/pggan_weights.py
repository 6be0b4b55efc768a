"""PGGAN weight files: MXNet key mapping, reading ``.params``/``.safetensors``/``.pt``, writing,
conversion, and :func:`build_pggan`, the factory Hydra instantiates (``conf/generator/pggan.yaml``).

The MXNet original is a Gluon Sequential, so its structural keys are layer indices plus the
parameter name: 1 Dense ``1.weight``, 2 Bias ``2.b``, 5 Conv3x3 ``5.weight``/``5.bias``, 8..15 the
blocks with their convolutions at children 0 and 3 (``8.0.weight``, ``8.3.bias``, ...), 16 the
Conv1x1 to RGB. Gluon's ``collect_params`` names the same parameters with a model prefix
(``generator0_block0_conv0_weight``). Converted files use the structural keys.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hyperexp.atomic import atomic_path
from hyperexp.device import resolve_device
from hyperexp.errors import InputError
from hyperexp.generate.mxnet_params import load_params
from hyperexp.generate.pggan import BLOCK_CHANNELS, PGGANGenerator

FIRST_BLOCK_INDEX = 8
TO_RGB_INDEX = FIRST_BLOCK_INDEX + len(BLOCK_CHANNELS)
_WRITABLE_SUFFIXES = (".safetensors", ".pt", ".pth")
WEIGHTS_SOURCE = (
    "the published PGGAN weights (generator.params) come from the HYPER authors' release "
    "(Dado et al., Sci Rep 2022; see the repository linked in the paper)"
)


class GeneratorWeightsError(InputError):
    """Weights do not fit the architecture (missing/extra/misshapen keys) or cannot be read."""


def _parameter_rows() -> list[tuple[str, str, str]]:
    """(MXNet structural key, Gluon name without the model prefix, module parameter name) of every parameter."""
    rows = [
        ("1.weight", "dense0_weight", "dense.weight"),
        ("2.b", "bias0_b", "bias"),
        ("5.weight", "conv0_weight", "conv.weight"),
        ("5.bias", "conv0_bias", "conv.bias"),
    ]
    for block, _ in enumerate(BLOCK_CHANNELS):
        for mx_child, conv in (("0", "conv0"), ("3", "conv1")):
            for kind in ("weight", "bias"):
                structural = f"{FIRST_BLOCK_INDEX + block}.{mx_child}.{kind}"
                rows.append((structural, f"block{block}_{conv}_{kind}", f"blocks.{block}.{conv}.{kind}"))
    rows += [(f"{TO_RGB_INDEX}.{kind}", f"conv1_{kind}", f"to_rgb.{kind}") for kind in ("weight", "bias")]
    return rows


STRUCTURAL_TO_MODULE = {structural: module for structural, _, module in _parameter_rows()}
MODULE_TO_STRUCTURAL = {module: structural for structural, module in STRUCTURAL_TO_MODULE.items()}
STRUCTURAL_TO_PREFIXED_SUFFIX = {structural: suffix for structural, suffix, _ in _parameter_rows()}
PREFIXED_SUFFIX_TO_STRUCTURAL = {suffix: structural for structural, suffix in STRUCTURAL_TO_PREFIXED_SUFFIX.items()}
# Longest first, so `generator0_block0_conv0_weight` matches `block0_conv0_weight`, not `conv0_weight`.
_SUFFIXES_LONGEST_FIRST = sorted(PREFIXED_SUFFIX_TO_STRUCTURAL, key=len, reverse=True)


def _guess_prefix(keys: list[str]) -> str | None:
    """Most common Gluon name prefix (e.g. ``generator0_``) among keys with a known suffix."""
    prefixes: Counter[str] = Counter()
    for key in keys:
        suffix = next((s for s in _SUFFIXES_LONGEST_FIRST if key.endswith(s)), None)
        if suffix is not None:
            prefixes[key[: len(key) - len(suffix)]] += 1
    return prefixes.most_common(1)[0][0] if prefixes else None


def _key_styles(keys: list[str]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Per key style: (file key -> structural key for keys it maps, structural key -> file key)."""
    styles = {
        "structural": (
            {key: key for key in keys if key in STRUCTURAL_TO_MODULE},
            {key: key for key in STRUCTURAL_TO_MODULE},
        ),
        "module": (
            {key: MODULE_TO_STRUCTURAL[key] for key in keys if key in MODULE_TO_STRUCTURAL},
            dict(STRUCTURAL_TO_MODULE),
        ),
    }
    prefix = _guess_prefix(keys)
    if prefix is not None:
        styles["prefixed"] = (
            {
                key: PREFIXED_SUFFIX_TO_STRUCTURAL[key[len(prefix) :]]
                for key in keys
                if key.startswith(prefix) and key[len(prefix) :] in PREFIXED_SUFFIX_TO_STRUCTURAL
            },
            {key: prefix + suffix for key, suffix in STRUCTURAL_TO_PREFIXED_SUFFIX.items()},
        )
    return styles


def _quoted(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(repr(key) for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def map_weight_keys(keys: list[str], source: str) -> dict[str, str]:
    """Map a file's keys (structural, Gluon-prefixed or this module's names) to structural keys.

    The style matching most keys wins; any missing or unexpected key is an error.
    """
    styles = _key_styles(keys)
    to_structural, to_file_key = max(styles.values(), key=lambda style: len(style[0]))
    missing = [to_file_key[key] for key in STRUCTURAL_TO_MODULE if key not in to_structural.values()]
    extra = [key for key in keys if key not in to_structural]
    problems = []
    if missing:
        problems.append(f"missing key{'s' * (len(missing) > 1)} {_quoted(missing)}")
    if extra:
        problems.append(f"unexpected key{'s' * (len(extra) > 1)} {_quoted(extra)}")
    if problems:
        raise GeneratorWeightsError(f"{source}: {'; '.join(problems)} for the PGGAN generator")
    return to_structural


def read_weight_arrays(path: Path) -> Mapping[str, np.ndarray | Tensor]:
    """Read ``{key: array}`` from ``.params`` (MXNet), ``.safetensors`` or ``.pt``."""
    if not path.is_file():
        raise GeneratorWeightsError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix == ".params":
        return load_params(path)
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise GeneratorWeightsError(f"{path}: cannot read safetensors file ({err})") from None
    if suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several unrelated types for corrupt files
            raise GeneratorWeightsError(f"{path}: cannot read torch file ({type(err).__name__})") from None
        if not isinstance(state, Mapping) or not all(
            isinstance(key, str) and isinstance(value, Tensor) for key, value in state.items()
        ):
            raise GeneratorWeightsError(f"{path}: expected a dict of name -> tensor")
        return state
    raise GeneratorWeightsError(f"{path}: unknown weights format {suffix!r} (use .params, .safetensors or .pt)")


def _writable(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() not in _WRITABLE_SUFFIXES:
        raise GeneratorWeightsError(f"{path}: cannot write {path.suffix!r} weights; use .safetensors or .pt")
    return path


def write_weight_file(path: str | os.PathLike, tensors: Mapping[str, Tensor]) -> None:
    """Write ``.safetensors`` or ``.pt`` atomically."""
    path = _writable(path)
    suffix = path.suffix.lower()
    tensors = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    with atomic_path(path) as temporary:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, temporary, metadata={"model": "pggan", "keys": "mxnet-structural"})
        else:
            torch.save(tensors, temporary)


def mxnet_state_dict(model: PGGANGenerator) -> dict[str, Tensor]:
    """The model's parameters under MXNet structural keys (the layout of converted weight files)."""
    params = dict(model.named_parameters())
    return {key: params[name].detach().contiguous() for key, name in STRUCTURAL_TO_MODULE.items()}


def load_weights(model: PGGANGenerator, path: str | os.PathLike) -> PGGANGenerator:
    """Load ``.params`` (MXNet), ``.safetensors`` or ``.pt`` into ``model`` and return it.

    Every key and shape is checked before any parameter changes, so a bad file leaves the
    model untouched.
    """
    path = Path(path)
    arrays = read_weight_arrays(path)
    params = dict(model.named_parameters())
    pairs = []
    for file_key, structural_key in map_weight_keys(list(arrays), str(path)).items():
        target, value = params[STRUCTURAL_TO_MODULE[structural_key]], torch.as_tensor(arrays[file_key])
        if tuple(value.shape) != tuple(target.shape):
            raise GeneratorWeightsError(
                f"{path}: key {file_key!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)}"
            )
        if not value.is_floating_point():
            raise GeneratorWeightsError(f"{path}: key {file_key!r} has non-float dtype {value.dtype}")
        pairs.append((target, value))
    with torch.no_grad():
        for target, value in pairs:
            target.copy_(value)
    return model


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_pggan(
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    device: str = "auto",
    dtype: str = "float32",
    tf32: bool = False,
    channels_last: bool = True,
) -> PGGANGenerator:
    """Build the generator for inference (Hydra ``_target_``; errors name the ``generator.model`` keys).

    ``weights``: a ``.params``/``.safetensors``/``.pt`` file; ``random_init`` only when asked
    (tests, benchmarks). ``dtype`` bfloat16/float16 and ``tf32`` apply on CUDA only.
    ``channels_last`` (default) measured ~2x faster than NCHW on CPU (oneDNN).
    """
    if weights is None and not random_init:
        raise InputError(
            f"generator.model.weights: not set; {WEIGHTS_SOURCE}. Download them and set "
            "generator.model.weights=/path/generator.params "
            "(or generator.model.random_init=true for an untrained generator, e.g. for tests)"
        )
    if weights is not None and random_init:
        raise InputError("generator.model.weights: set either it or generator.model.random_init=true, not both")
    if dtype not in _DTYPES:
        raise InputError(f"generator.model.dtype: must be one of {sorted(_DTYPES)}, got {dtype!r}")
    torch_device = resolve_device(device, key="generator.model.device")
    if torch_device.type != "cuda" and (dtype != "float32" or tf32):
        raise InputError(
            f"generator.model.dtype={dtype!r}, generator.model.tf32={tf32}: CUDA-only options; "
            f"on {torch_device} use float32 without tf32"
        )
    model = PGGANGenerator(channels_last=channels_last, tf32=tf32)
    if weights is not None:
        load_weights(model, weights)
    model.requires_grad_(False).eval()
    return model.to(device=torch_device, dtype=_DTYPES[dtype])


def convert_weights(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Convert generator weights (e.g. ``.params``) to ``.safetensors`` or ``.pt``, after checking
    them against the architecture; the output uses MXNet structural keys."""
    destination = _writable(destination)  # before the slow read
    model = load_weights(PGGANGenerator(), source)
    write_weight_file(destination, mxnet_state_dict(model))
