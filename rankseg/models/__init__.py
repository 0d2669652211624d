"""Segmentation networks. DeepLabV3+ and PSPNet come from segmentation-models-pytorch via ``_target_`` in
``configs/model/``; FCN-8s (not in smp) is :class:`FCN8s`. :func:`check_pretrained_weights` makes sure
ImageNet weights are already on disk, since nothing here downloads silently.
"""

from rankseg.models.fcn import FCN8s
from rankseg.models.weights import MissingWeightsError, check_pretrained_weights

__all__ = ["FCN8s", "MissingWeightsError", "check_pretrained_weights"]
