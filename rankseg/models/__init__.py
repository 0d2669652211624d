"""Segmentation networks. DeepLabV3+ and PSPNet come from segmentation-models-pytorch via ``_target_`` in
``configs/model/``; FCN-8s (not in smp) is :class:`FCN8s`, RankSEG-RMA's CPT (in neither smp nor timm)
:class:`CPTSegmenter`. :func:`check_pretrained_weights` makes sure
ImageNet weights are already on disk, since nothing here downloads silently. :mod:`rankseg.models.reference`
rebuilds the JMLR reference trainer's networks so that its checkpoints load (``configs/model/ref_*.yaml``).
"""

from rankseg.models.cpt import CPTSegmenter
from rankseg.models.fcn import FCN8s
from rankseg.models.reference import (
    REFERENCE_ARCHS,
    ReferenceDeepLabV3Plus,
    ReferenceFCN8,
    ReferencePSPNet,
    ReferenceStateDictError,
    load_reference_state_dict,
    reference_arch_names,
    reference_model_config,
    strip_module_prefix,
)
from rankseg.models.weights import MissingWeightsError, check_pretrained_weights

__all__ = [
    "CPTSegmenter",
    "FCN8s",
    "MissingWeightsError",
    "REFERENCE_ARCHS",
    "ReferenceDeepLabV3Plus",
    "ReferenceFCN8",
    "ReferencePSPNet",
    "ReferenceStateDictError",
    "check_pretrained_weights",
    "load_reference_state_dict",
    "reference_arch_names",
    "reference_model_config",
    "strip_module_prefix",
]
