"""rankseg: Dice/IoU-optimal segmentation from per-pixel probabilities (RankSEG), exact and vectorised.

A drop-in for the PyPI package ``rankseg`` 0.0.8 (same names, parameters and error messages), plus an exact
solver (``solver="exact"``) and :func:`expected_metric`, the exact expected Dice/IoU of any prediction.
Importing this package needs only torch and numpy; the experiment code lives in subpackages
(``rankseg.data``, ``rankseg.models``, ...) that are imported on demand.
"""

from importlib import metadata as _metadata

from rankseg import distribution, functional
from rankseg._ba import rankdice_ba
from rankseg._core import RankSEG
from rankseg._details import RankSEGDetails, rankseg_details
from rankseg._exact import expected_metric
from rankseg._rma import rankseg_rma
from rankseg.distribution import RefinedNormal, RefinedNormalPB

try:
    __version__ = _metadata.version("rankseg-repro")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "RankSEG",
    "functional",
    "distribution",
    "RefinedNormalPB",
    "RefinedNormal",
    "rankdice_ba",
    "rankseg_rma",
    "expected_metric",
    "rankseg_details",
    "RankSEGDetails",
]
