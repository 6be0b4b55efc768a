"""Single-trial responses from one fMRI run: a GLM per trial (LSS) or one GLM of all trials (LSA).

The design matrix is nilearn's (``make_first_level_design_matrix``: HRF convolution, drift,
confounds) with one column per trial, and the data are scaled to percent signal change as
nilearn's ``FirstLevelModel`` does. LSS ("least squares separate", the standard for rapid event
designs) fits, per trial, the trial, all other trials as one regressor, and the nuisance columns.
Fitting a ``FirstLevelModel`` per trial repeats the same work K times; here the nuisance columns
are projected out once and the K two-regressor fits are solved together in closed form (K x voxels
arrays), which gives the same betas as nilearn's OLS fits (``tests/test_glm.py`` checks this).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hyperexp.errors import InputError

METHODS = ("lss", "lsa")
HRF_MODELS = ("glover", "spm")  # one column per trial: the closed-form LSS needs that
DRIFT_MODELS = ("cosine", "polynomial", "none")
TRIAL_PREFIX = "trial_"


@dataclass  # not frozen: it is also the typed schema of data.glm, which Hydra merges into
class GlmSettings:
    """How single-trial responses are estimated (``data.glm.*``)."""

    method: str = "lss"  # lss: one GLM per trial (trial + all others); lsa: one GLM of all trials
    hrf_model: str = "glover"  # glover | spm (nilearn's names)
    drift_model: str = "cosine"  # cosine | polynomial | none
    high_pass: float = 0.01  # Hz, the cosine drift's cut-off
    drift_order: int = 1  # the polynomial drift's order
    confounds: list[str] = field(default_factory=list)  # columns of the run's fMRIPrep confounds file
    signal_scaling: bool = True  # percent signal change per voxel, as FirstLevelModel's default
    t_r: float | None = None  # seconds; None: the run's JSON sidecar (RepetitionTime), else the NIfTI header

    def __post_init__(self) -> None:
        for key, value, choices in (
            ("method", self.method, METHODS),
            ("hrf_model", self.hrf_model, HRF_MODELS),
            ("drift_model", self.drift_model, DRIFT_MODELS),
        ):
            if value not in choices:
                raise InputError(f"data.glm.{key}: must be one of {', '.join(choices)}, got {value!r}")
        if not self.high_pass > 0:
            raise InputError(f"data.glm.high_pass: must be > 0 Hz, got {self.high_pass}")
        if self.drift_order < 0:
            raise InputError(f"data.glm.drift_order: must be >= 0, got {self.drift_order}")
        if self.t_r is not None and not self.t_r > 0:
            raise InputError(f"data.glm.t_r: must be > 0 seconds, got {self.t_r}")


def trial_design(
    n_scans: int, t_r: float, trials, other_events, settings: GlmSettings, confounds=None
) -> tuple[np.ndarray, np.ndarray]:
    """The LSA design of one run, split: (scans x trials) regressors, one per row of ``trials``,
    and (scans x nuisance) columns: other events by their ``trial_type``, drift, confounds, constant."""
    from nilearn.glm.first_level import make_first_level_design_matrix  # here: config.py imports this module

    names = [f"{TRIAL_PREFIX}{k:05d}" for k in range(len(trials))]
    events = pd.concat(
        [
            trials[["onset", "duration"]].assign(trial_type=names),
            other_events[["onset", "duration"]].assign(trial_type="other_" + other_events["trial_type"].astype(str)),
        ],
        ignore_index=True,
    )
    design = make_first_level_design_matrix(
        np.arange(n_scans) * t_r,
        events,
        hrf_model=settings.hrf_model,
        drift_model=None if settings.drift_model == "none" else settings.drift_model,
        high_pass=settings.high_pass,
        drift_order=settings.drift_order,
        add_regs=None if confounds is None else np.asarray(confounds, dtype=float),
        add_reg_names=None if confounds is None else [f"confound_{k}" for k in range(np.shape(confounds)[1])],
    )
    nuisance = [column for column in design.columns if column not in names]
    return design[names].to_numpy(), design[nuisance].to_numpy()


def scaled(bold: np.ndarray, settings: GlmSettings) -> np.ndarray:
    """Scans x voxels as the GLM sees them (float64; percent signal change with ``signal_scaling``)."""
    from nilearn.glm.first_level import mean_scaling

    bold = np.asarray(bold, dtype=np.float64)
    return mean_scaling(bold, 0)[0] if settings.signal_scaling else bold


def lss_betas(bold: np.ndarray, regressors: np.ndarray, nuisance: np.ndarray) -> np.ndarray:
    """Per trial k, the trial's coefficient in the OLS fit of ``bold`` on [trial k, sum of the other
    trials, nuisance]: (trials, voxels). By Frisch-Waugh-Lovell, the nuisance columns are projected
    out of the regressors once, and each two-regressor fit is a 2x2 solve in closed form."""
    basis = np.linalg.svd(nuisance, full_matrices=False)[0] if nuisance.size else np.zeros((len(bold), 0))
    trial = regressors - basis @ (basis.T @ regressors)  # (scans, trials), nuisance removed
    others = trial.sum(axis=1, keepdims=True) - trial
    trial_y = trial.T @ bold  # (trials, voxels); the projection is symmetric, so bold needs none
    others_y = (trial.sum(axis=1) @ bold)[None, :] - trial_y
    tt, oo, to = (np.einsum("sk,sk->k", a, b)[:, None] for a, b in ((trial, trial), (others, others), (trial, others)))
    alone = oo <= 1e-12 * tt  # one trial in the run: no "others" regressor, a plain fit
    determinant = np.where(alone, tt * tt, tt * oo - to**2)
    return np.where(alone, trial_y / tt, (oo * trial_y - to * others_y) / determinant)


def lsa_betas(bold: np.ndarray, regressors: np.ndarray, nuisance: np.ndarray) -> np.ndarray:
    """All trials' coefficients of one OLS fit on [every trial, nuisance]: (trials, voxels)."""
    design = np.hstack([regressors, nuisance])
    return np.linalg.lstsq(design, bold, rcond=None)[0][: regressors.shape[1]]


def single_trial_betas(
    bold: np.ndarray,
    t_r: float,
    trials,
    other_events,
    settings: GlmSettings,
    confounds=None,
) -> np.ndarray:
    """(trials, voxels) responses of one run's ``bold`` (scans x voxels) to each row of ``trials``."""
    regressors, nuisance = trial_design(len(bold), t_r, trials, other_events, settings, confounds)
    fit = lss_betas if settings.method == "lss" else lsa_betas
    return fit(scaled(bold, settings), regressors, nuisance)
