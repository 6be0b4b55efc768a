"""Hyperalignment equal to PyMVPA 2.6.5 ``Hyperalignment()`` defaults, computed in the samples' row space.

``rowspace``: the Procrustes fits (math); ``estimator``: PyMVPA's three levels as a scikit-learn
estimator; ``subjects``: the input checks.
"""

from hyperexp.align.estimator import Hyperalignment

__all__ = ["Hyperalignment"]
