"""From subjects' files to one decoding dataset: data variants and leakage protocols.

Variants: ``subject`` (one subject), ``average`` (plain average over subjects, the control),
``hyperaligned`` (hyperalign, map each subject into the common space, average: the published
variant; a pool of one subject is that subject alone). Protocols:

- ``published`` reproduces the tutorial: test and training rows are stacked (test first)
  before hyperalignment, and afterwards test and training rows are z-scored each with their
  own statistics. The test responses thereby shape the common space and their own scaling.
- ``strict``: alignment and z-scoring statistics are fitted on training rows only and then
  applied to the test rows, so nothing about the test set reaches the model.

Z-scoring uses the population sd (ddof 0); a voxel that is constant over the rows it is scored
on is only demeaned (its sd is taken as 1), so it becomes all zeros instead of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hyperexp.align.pool import aligned_average
from hyperexp.data.cache import cached_arrays, content_key
from hyperexp.data.files import SubjectData
from hyperexp.errors import InputError

VARIANTS = ("subject", "average", "hyperaligned")
PROTOCOLS = ("published", "strict")


@dataclass(frozen=True)
class DecodingData:
    """Decoder inputs x (trials, features) and target latents t (trials, latent_dim), float32,
    with what they were made from: the variant (after a pool of one became ``subject``), the
    protocol and the subject numbers."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    variant: str
    protocol: str
    subjects: tuple[int, ...]
    files: tuple[str, ...] = ()  # the subjects' files
    x_validation: np.ndarray | None = None  # training trials held out by :func:`hold_out_validation`
    t_validation: np.ndarray | None = None
    source_tags: dict[str, str] = field(default_factory=dict)  # what the source reports, e.g. the GLM's time

    @property
    def name(self) -> str:
        """``subject3``, ``average`` or ``hyperaligned`` (with the pool size when it is not 2)."""
        if self.variant == "subject":
            return f"subject{self.subjects[0]}"
        return self.variant if len(self.subjects) == 2 else f"{self.variant}{len(self.subjects)}"

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.x_train, self.t_train, self.x_test, self.t_test

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(x, t) by split: ``train``, ``validation`` (when held out) and ``test``."""
        validation = {} if self.x_validation is None else {"validation": (self.x_validation, self.t_validation)}
        return {"train": (self.x_train, self.t_train), **validation, "test": (self.x_test, self.t_test)}

    def tags(self) -> dict[str, str]:
        return {
            "data_variant": self.variant,
            "subjects": ",".join(map(str, self.subjects)),
            "pool_size": str(len(self.subjects)),
            "protocol": self.protocol,
            **self.source_tags,
        }


def zscore_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population sd; a zero sd becomes 1 so constant columns are only demeaned."""
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def zscore(rows: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    mean, std = stats if stats is not None else zscore_stats(rows)
    return (rows - mean) / std


def check_same_stimuli(subjects: list[SubjectData], names: list[str]) -> None:
    """All subjects must have seen the same stimuli: equal trial counts and identical latents."""
    first = subjects[0]
    for subject, name in zip(subjects[1:], names[1:]):
        for split in ("train", "test"):
            x, t, t0 = getattr(subject, f"x_{split}"), getattr(subject, f"t_{split}"), getattr(first, f"t_{split}")
            if len(x) != len(t0):
                raise InputError(f"{name}: {len(x)} {split} trials, but {names[0]} has {len(t0)}")
            if t.shape != t0.shape or not np.allclose(t, t0, rtol=1e-5, atol=1e-6):
                raise InputError(
                    f"{name}: {split} latents differ from {names[0]}'s (subjects must see the same stimuli)"
                )


def prepare(
    subjects: list[SubjectData],
    variant: str,
    protocol: str = "published",
    names: list[str] | None = None,
    numbers: list[int] | None = None,
    device=None,
    cache_dir: str | Path | None = None,
) -> DecodingData:
    """Combine subjects into one dataset by ``variant`` and z-score it by ``protocol``.

    With ``cache_dir``, hyperaligned averages are cached by content (the subjects' arrays and the
    protocol), so a sweep aligns each distinct input once.
    """
    if variant not in VARIANTS:
        raise InputError(f"data.variant: unknown data variant '{variant}' (choose from {', '.join(VARIANTS)})")
    if protocol not in PROTOCOLS:
        raise InputError(f"data.protocol: unknown protocol '{protocol}' (choose from {', '.join(PROTOCOLS)})")
    if not subjects:
        raise InputError("data.subjects: no subjects selected")
    numbers = numbers or list(range(1, len(subjects) + 1))
    names = names or [f"subject {k}" for k in numbers]
    if variant == "subject" and len(subjects) != 1:
        raise InputError(f"data.subjects: variant 'subject' takes one subject, got {len(subjects)}")
    check_same_stimuli(subjects, names)

    if variant == "hyperaligned" and len(subjects) == 1:
        variant = "subject"  # a pool of one: there is nothing to align it to
    if variant == "hyperaligned":
        if cache_dir is None:
            x_train, x_test = aligned_average(subjects, protocol, device)
        else:
            key = content_key(
                [a for s in subjects for a in (s.x_train, s.x_test)], protocol=protocol, method="pymvpa-defaults"
            )
            aligned = cached_arrays(
                cache_dir, key, lambda: dict(zip(("x_train", "x_test"), aligned_average(subjects, protocol, device)))
            )
            x_train, x_test = aligned["x_train"], aligned["x_test"]
    else:
        voxels = {s.n_voxels for s in subjects}
        if len(voxels) > 1:
            raise InputError(
                f"data.variant: '{variant}' needs equal voxel counts, got {sorted(voxels)}: use hyperaligned"
            )
        x_train = np.mean([s.x_train for s in subjects], axis=0)
        x_test = np.mean([s.x_test for s in subjects], axis=0)

    if protocol == "published":
        x_train, x_test = zscore(x_train), zscore(x_test)
    else:
        stats = zscore_stats(x_train)
        x_train, x_test = zscore(x_train, stats), zscore(x_test, stats)
    return DecodingData(
        x_train=x_train.astype(np.float32),
        t_train=subjects[0].t_train.astype(np.float32),
        x_test=x_test.astype(np.float32),
        t_test=subjects[0].t_test.astype(np.float32),
        variant=variant,
        protocol=protocol,
        subjects=tuple(numbers),
        files=tuple(names),
    )


def check_validation_trials(n_trials: int, n_train: int) -> None:
    if not 0 <= n_trials <= n_train - 2:
        raise InputError(f"data.validation_trials: must be 0..{n_train - 2}, got {n_trials}")


def hold_out_validation(data: DecodingData, n_trials: int) -> DecodingData:
    """Move the last ``n_trials`` training trials into a validation split (what a hyperparameter
    search scores; the test trials stay unseen). Carved after the variant and protocol were applied,
    so under ``strict`` nothing of the test trials reaches the validation rows."""
    check_validation_trials(n_trials, len(data.x_train))
    if n_trials == 0:
        return data
    keep = len(data.x_train) - n_trials
    return replace(
        data,
        x_train=data.x_train[:keep],
        t_train=data.t_train[:keep],
        x_validation=data.x_train[keep:],
        t_validation=data.t_train[keep:],
    )
