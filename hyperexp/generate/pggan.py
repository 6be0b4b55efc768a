"""The published PGGAN face generator (HYPER, Dado et al. 2022) in PyTorch.

Architecture of the MXNet Gluon original, with its Sequential indices (the structural keys of
``generator.params`` are these indices plus the parameter name):

    0 Pixelnorm, 1 Dense(512->8192, no bias), reshape (N,512,4,4), 2 Bias(512) ``b``,
    3 LeakyReLU(0.2), 4 Pixelnorm, 5 Conv3x3(512), 6 LeakyReLU, 7 Pixelnorm,
    8..15 Blocks (upsample 2x, Conv3x3 ``.0``, LeakyReLU, Pixelnorm, Conv3x3 ``.3``, LeakyReLU,
    Pixelnorm), 16 Conv1x1(16->3).

``forward(z, layer)`` returns the output of index ``layer + 7`` like the original's
``generator(x, layer)``: layer 0 is the 4x4 stem, layer k (1..8) the k-th block, layer 9 the
(N, 3, 1024, 1024) image in roughly [-1, 1] (not clipped).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperexp.device import resolve_device
from hyperexp.generate.mxnet_params import load_params, replace_atomically

__all__ = [
    "PGGANGenerator",
    "GeneratorWeightsError",
    "build_pggan",
    "convert_weights",
    "pixel_norm",
    "upsample_nearest_2x",
    "LATENT_DIM",
    "IMAGE_LAYER",
]

LATENT_DIM = 512
STEM_CHANNELS = 512
IMAGE_LAYER = 9
NEGATIVE_SLOPE = 0.2
PIXEL_NORM_EPS = 1e-8
# (in, out) channels of the eight upsampling blocks, 4x4 -> 1024x1024.
BLOCK_CHANNELS = ((512, 512), (512, 512), (512, 512), (512, 256), (256, 128), (128, 64), (64, 32), (32, 16))
FIRST_BLOCK_INDEX = 8
TO_RGB_INDEX = FIRST_BLOCK_INDEX + len(BLOCK_CHANNELS)

MISSING_WEIGHTS_MESSAGE = (
    "no generator weights given: the published PGGAN weights (generator.params) come from the "
    "HYPER authors' release (Dado et al., Sci Rep 2022; see the repository linked in the paper). "
    "Download them and set generator.model.weights=/path/generator.params "
    "(or generator.model.random_init=true for an untrained generator, e.g. for tests)."
)


def _inverse_rms(x: Tensor, eps: float) -> Tensor:
    # One fused pass over x (vector_norm) instead of square -> temporary -> mean; the rest acts
    # on the C-times smaller result.
    mean_square = torch.linalg.vector_norm(x, dim=1, keepdim=True).square() / x.shape[1]
    return torch.rsqrt(mean_square + eps)


def pixel_norm(x: Tensor, eps: float = PIXEL_NORM_EPS) -> Tensor:
    """``x * rsqrt(mean(x**2 over dim 1) + eps)``: unit root-mean-square feature vectors."""
    return x * _inverse_rms(x, eps)


def upsample_nearest_2x(x: Tensor) -> Tensor:
    """Repeat every row and column twice (nearest-neighbour 2x, exact)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _activate(x: Tensor) -> Tensor:
    """LeakyReLU(0.2) then Pixelnorm; in place when no gradient is needed (fewer memory passes)."""
    if x.requires_grad:
        return pixel_norm(F.leaky_relu(x, NEGATIVE_SLOPE))
    x = F.leaky_relu_(x, NEGATIVE_SLOPE)
    return x.mul_(_inverse_rms(x, PIXEL_NORM_EPS))


class UpsampleBlock(nn.Module):
    """Nearest 2x upsampling, then two (Conv3x3, LeakyReLU, Pixelnorm)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = _activate(self.conv0(upsample_nearest_2x(x)))
        return _activate(self.conv1(x))


def _structural_key_table() -> dict[str, str]:
    """MXNet structural key -> this module's parameter name (the explicit mapping)."""
    table = {
        "1.weight": "dense.weight",
        "2.b": "bias",
        "5.weight": "conv.weight",
        "5.bias": "conv.bias",
    }
    for block, _ in enumerate(BLOCK_CHANNELS):
        for mx_child, conv in (("0", "conv0"), ("3", "conv1")):
            for kind in ("weight", "bias"):
                table[f"{FIRST_BLOCK_INDEX + block}.{mx_child}.{kind}"] = f"blocks.{block}.{conv}.{kind}"
    table[f"{TO_RGB_INDEX}.weight"] = "to_rgb.weight"
    table[f"{TO_RGB_INDEX}.bias"] = "to_rgb.bias"
    return table


def _prefixed_suffix_table() -> dict[str, str]:
    """Gluon ``collect_params`` name without the model prefix -> MXNet structural key."""
    table = {
        "dense0_weight": "1.weight",
        "bias0_b": "2.b",
        "conv0_weight": "5.weight",
        "conv0_bias": "5.bias",
        "conv1_weight": f"{TO_RGB_INDEX}.weight",
        "conv1_bias": f"{TO_RGB_INDEX}.bias",
    }
    for block, _ in enumerate(BLOCK_CHANNELS):
        for mx_child, conv in (("0", "conv0"), ("3", "conv1")):
            for kind in ("weight", "bias"):
                table[f"block{block}_{conv}_{kind}"] = f"{FIRST_BLOCK_INDEX + block}.{mx_child}.{kind}"
    return table


STRUCTURAL_TO_MODULE = _structural_key_table()
MODULE_TO_STRUCTURAL = {name: key for key, name in STRUCTURAL_TO_MODULE.items()}
PREFIXED_SUFFIX_TO_STRUCTURAL = _prefixed_suffix_table()
STRUCTURAL_TO_PREFIXED_SUFFIX = {key: suffix for suffix, key in PREFIXED_SUFFIX_TO_STRUCTURAL.items()}
# Longest first, so `generator0_block0_conv0_weight` matches `block0_conv0_weight`, not `conv0_weight`.
_SUFFIXES_LONGEST_FIRST = sorted(PREFIXED_SUFFIX_TO_STRUCTURAL, key=len, reverse=True)


class GeneratorWeightsError(ValueError):
    """Weights do not fit the architecture (missing/extra/misshapen keys) or cannot be read."""


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


def write_weight_file(path: str | os.PathLike, tensors: Mapping[str, Tensor]) -> None:
    """Write ``.safetensors`` or ``.pt`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise GeneratorWeightsError(f"{path}: cannot write {suffix!r}; use .safetensors or .pt")
    tensors = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    with replace_atomically(path) as temporary:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, temporary, metadata={"model": "pggan", "keys": "mxnet-structural"})
        else:
            torch.save(tensors, temporary)


@contextlib.contextmanager
def _cuda_tf32(enabled: bool) -> Iterator[None]:
    """Set TF32 for cuDNN convolutions and matmuls for one call, then restore."""
    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


class PGGANGenerator(nn.Module):
    """PGGAN generator: latents (N, 512) -> images (N, 3, 1024, 1024) or a hidden layer."""

    latent_dim = LATENT_DIM
    image_layer = IMAGE_LAYER

    def __init__(self, channels_last: bool = True, tf32: bool = False) -> None:
        super().__init__()
        self.dense = nn.Linear(LATENT_DIM, STEM_CHANNELS * 16, bias=False)
        self.bias = nn.Parameter(torch.zeros(STEM_CHANNELS))
        self.conv = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, padding=1)
        self.blocks = nn.ModuleList(UpsampleBlock(cin, cout) for cin, cout in BLOCK_CHANNELS)
        self.to_rgb = nn.Conv2d(BLOCK_CHANNELS[-1][1], 3, 1)
        self.channels_last = channels_last
        self.tf32 = tf32
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, z: Tensor, layer: int = IMAGE_LAYER) -> Tensor:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= IMAGE_LAYER:
            raise ValueError(f"layer must be an int in 0..{IMAGE_LAYER}, got {layer!r}")
        if z.ndim != 2 or z.shape[1] != LATENT_DIM:
            raise ValueError(f"latents must have shape (N, {LATENT_DIM}), got {tuple(z.shape)}")
        tf32 = _cuda_tf32(self.tf32) if z.is_cuda else contextlib.nullcontext()
        with tf32:
            return self._run(z.to(self.bias.dtype), layer)

    def _run(self, z: Tensor, layer: int) -> Tensor:
        x = self.dense(pixel_norm(z)).view(-1, STEM_CHANNELS, 4, 4)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = _activate(x + self.bias.view(1, -1, 1, 1))
        x = _activate(self.conv(x))
        for block in self.blocks[: min(layer, len(self.blocks))]:
            x = block(x)
        if layer == IMAGE_LAYER:
            x = self.to_rgb(x)
        return x.contiguous()

    @property
    def device(self) -> torch.device:
        return self.bias.device

    def generate(self, latents: Tensor | np.ndarray, batch_size: int = 4, layer: int = IMAGE_LAYER) -> Tensor:
        """Run ``forward`` in batches without autograd; returns a float32 CPU tensor."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        latents = torch.as_tensor(latents)
        with torch.inference_mode():
            outputs = [
                self(chunk.to(self.device, non_blocking=True), layer).float().cpu()
                for chunk in latents.split(batch_size)
            ]
        return torch.cat(outputs)

    def mxnet_state_dict(self) -> dict[str, Tensor]:
        """Parameters under MXNet structural keys (the layout of converted weight files)."""
        params = dict(self.named_parameters())
        return {key: params[name].detach().contiguous() for key, name in STRUCTURAL_TO_MODULE.items()}

    def load_weights(self, path: str | os.PathLike) -> PGGANGenerator:
        """Load ``.params`` (MXNet), ``.safetensors`` or ``.pt``.

        Every key and shape is checked before any parameter changes, so a bad file leaves the
        model untouched.
        """
        path = Path(path)
        arrays = read_weight_arrays(path)
        params = dict(self.named_parameters())
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
        return self


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_pggan(
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    device: str = "auto",
    dtype: str = "float32",
    tf32: bool = False,
    channels_last: bool = True,
) -> PGGANGenerator:
    """Build the generator for inference (Hydra ``_target_``).

    ``weights``: a ``.params``/``.safetensors``/``.pt`` file; ``random_init`` only when asked
    (tests, benchmarks). ``dtype`` bfloat16/float16 and ``tf32`` apply on CUDA only.
    ``channels_last`` (default) measured ~2x faster than NCHW on CPU (oneDNN).
    """
    if weights is None and not random_init:
        raise ValueError(MISSING_WEIGHTS_MESSAGE)
    if weights is not None and random_init:
        raise ValueError("set either generator.model.weights or generator.model.random_init=true, not both")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    torch_device = resolve_device(device)
    on_cuda = torch_device.type == "cuda"
    if not on_cuda and (dtype != "float32" or tf32):
        raise ValueError(f"dtype={dtype!r} and tf32 are CUDA-only options; on {torch_device} use float32")
    model = PGGANGenerator(channels_last=channels_last, tf32=tf32)
    if weights is not None:
        model.load_weights(weights)
    model.requires_grad_(False).eval()
    return model.to(device=torch_device, dtype=_DTYPES[dtype])


def convert_weights(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Convert generator weights (e.g. ``.params``) to ``.safetensors`` or ``.pt``, after checking
    them against the architecture; the output uses MXNet structural keys."""
    model = PGGANGenerator().load_weights(source)
    write_weight_file(destination, model.mxnet_state_dict())
