"""Datasets of the paper's experiments (Cityscapes, VOC 2012, Kvasir-SEG) and a synthetic one.

Each dataset yields ``(image, label)``: a (3, H, W) float32 tensor normalised with the
dataset's ``mean``/``std`` and a (H, W) int64 tensor with ignore index 255. Hydra configs in
``configs/dataset/`` instantiate them via ``_target_``. Importing this package pulls in
albumentations, OpenCV and PIL; ``import rankseg`` alone does not.
"""

from rankseg.data.base import IGNORE_INDEX, DatasetLayoutError, SegmentationDataset
from rankseg.data.cityscapes import CITYSCAPES_ID_TO_TRAINID, CityscapesSegmentation
from rankseg.data.fake import make_fake_dataset
from rankseg.data.kvasir import KvasirSegmentation, kvasir_split
from rankseg.data.synthetic import SyntheticSegmentation, generate_synthetic
from rankseg.data.transforms import build_eval_transform, build_train_transform
from rankseg.data.voc import VOCSegmentation

__all__ = [
    "CITYSCAPES_ID_TO_TRAINID",
    "IGNORE_INDEX",
    "CityscapesSegmentation",
    "DatasetLayoutError",
    "KvasirSegmentation",
    "SegmentationDataset",
    "SyntheticSegmentation",
    "VOCSegmentation",
    "build_eval_transform",
    "build_train_transform",
    "generate_synthetic",
    "kvasir_split",
    "make_fake_dataset",
]
