"""The dense linear algebra of the fits, on CPU through NumPy/SciPy's BLAS and LAPACK (OpenBLAS).

That is the library the dense algorithm runs on in NumPy, so on CPU the fits are never handicapped
against it: torch's MKL build runs gemm 15-60% and gesdd/syevd 10-25% slower on this project's AMD
CPUs (an SVD of a wide matrix ~2.5x slower still), and has no syrk, trmm or sygst, the symmetric and
triangular products that take a fraction of a general matmul's work. Results share memory with
NumPy; on other devices every kernel is the plain torch expression.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import Tensor


def matmul(left: Tensor, right: Tensor) -> Tensor:
    """``left @ right``: BLAS gemm (transposed operands are read in place)."""
    if left.device.type != "cpu":
        return left @ right
    return torch.from_numpy(left.numpy() @ right.numpy())


def gram(rows: Tensor) -> Tensor:
    """``rows @ rows.T`` (r, r). NumPy's matmul spots the transposed operand and calls BLAS syrk."""
    if rows.device.type != "cpu":
        return rows @ rows.mT
    array = rows.numpy()
    return torch.from_numpy(array @ array.T)


def lower_product(lower: Tensor, matrix: Tensor) -> Tensor:
    """``lower @ matrix`` for lower-triangular ``lower`` (r, r): BLAS trmm, half of a matmul's work."""
    if lower.device.type != "cpu":
        return lower @ matrix
    (trmm,) = scipy.linalg.get_blas_funcs(("trmm",), (lower.numpy(),))
    return torch.from_numpy(trmm(1.0, lower.numpy(), matrix.numpy(), lower=1))


def lower_congruence(lower: Tensor, symmetric: Tensor) -> Tensor:
    """``lower.T @ symmetric @ lower`` for lower-triangular ``lower`` (r, r): LAPACK sygst, r^3 flops
    instead of the 4 r^3 of two matmuls."""
    if symmetric.device.type != "cpu":
        return lower.mT @ symmetric @ lower
    (sygst,) = scipy.linalg.get_lapack_funcs(("sygst",), (symmetric.numpy(),))
    reduced, info = sygst(symmetric.numpy(), lower.numpy(), itype=3, lower=1)  # itype 3: L.T @ A @ L
    if info != 0:
        raise RuntimeError(f"LAPACK sygst failed with info={info}")
    below = np.tril(reduced, -1)  # sygst fills the lower triangle only
    return torch.from_numpy(np.tril(reduced) + below.T)


def cholesky(symmetric: Tensor) -> Tensor | None:
    """The lower Cholesky factor of a symmetric matrix, or None if it is not numerically positive
    definite: LAPACK potrf."""
    if symmetric.device.type != "cpu":
        lower, info = torch.linalg.cholesky_ex(symmetric)
        return lower if info.item() == 0 else None
    (potrf,) = scipy.linalg.get_lapack_funcs(("potrf",), (symmetric.numpy(),))
    lower, info = potrf(symmetric.numpy(), lower=1, clean=1)
    return torch.from_numpy(lower) if info == 0 else None


def eigh(symmetric: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix: LAPACK syevd."""
    if symmetric.device.type != "cpu":
        return torch.linalg.eigh(symmetric)
    values, vectors = scipy.linalg.eigh(symmetric.numpy(), driver="evd", check_finite=False)
    return torch.from_numpy(values), torch.from_numpy(vectors)


def svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD ``U, S, Vh`` (S descending): LAPACK gesdd."""
    if matrix.device.type != "cpu":
        return torch.linalg.svd(matrix, full_matrices=False)
    # LAPACK reads the C-ordered matrix as its Fortran-ordered transpose, no transposing copy: svd(M.T) = V S U.T
    v, singular, ut = scipy.linalg.svd(matrix.numpy().T, full_matrices=False, check_finite=False)
    return torch.from_numpy(ut.T), torch.from_numpy(singular), torch.from_numpy(v.T)
