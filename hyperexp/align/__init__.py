"""Hyperalignment equal to PyMVPA 2.6.5 ``Hyperalignment()`` defaults, fast at every shape.

``pool``: the pipeline's align stage (align a pool of subjects by protocol, average);
``estimator``: PyMVPA's three levels as a scikit-learn estimator; ``subjects``: its input checks;
``routes``: the cost model that picks how each Procrustes fit is computed; ``procrustes``: the fits
(row space: r x r Gram eigendecomposition or one SVD; voxel space: one SVD); ``bases``: the bases
they are computed in; ``coordinates``: mean-free coordinates and z-scoring; ``kernels``: syrk and
sygst on CPU.
"""

from hyperexp.align.estimator import Hyperalignment

__all__ = ["Hyperalignment"]
