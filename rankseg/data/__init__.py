"""Datasets of the papers' experiments (Cityscapes, VOC 2012 with and without SBD, Kvasir-SEG, ADE20K, and the
LiTS and KiTS19 CT volumes as 2-D slices) and a synthetic one.

Each dataset yields ``(image, label)``: a (3, H, W) float32 tensor normalised with the dataset's
``mean``/``std`` (CT: windowed HU in [-1, 1], 3 or 1 channels) and a (H, W) int64 tensor with ignore index
255. Hydra configs in ``configs/dataset/`` instantiate them via ``_target_``. Importing this package pulls in
albumentations, OpenCV and PIL (nibabel when a CT dataset is built); ``import rankseg`` alone does not.
"""

from rankseg.data.ade20k import ADE20KSegmentation
from rankseg.data.base import IGNORE_INDEX, DatasetLayoutError, SegmentationDataset
from rankseg.data.cityscapes import CITYSCAPES_ID_TO_TRAINID, CityscapesSegmentation
from rankseg.data.ct import (
    CaseBatchSampler,
    CTSliceSegmentation,
    KiTSSegmentation,
    LiTSSegmentation,
    iter_case_chunks,
    window_ct,
)
from rankseg.data.fake import make_fake_dataset
from rankseg.data.kvasir import KvasirSegmentation, kvasir_split
from rankseg.data.synthetic import SyntheticSegmentation, generate_synthetic
from rankseg.data.transforms import build_eval_transform, build_train_transform
from rankseg.data.voc import VOCSegmentation
from rankseg.data.voc_aug import VOCAugSegmentation

__all__ = [
    "ADE20KSegmentation",
    "CITYSCAPES_ID_TO_TRAINID",
    "CTSliceSegmentation",
    "CaseBatchSampler",
    "IGNORE_INDEX",
    "CityscapesSegmentation",
    "DatasetLayoutError",
    "KiTSSegmentation",
    "KvasirSegmentation",
    "LiTSSegmentation",
    "SegmentationDataset",
    "SyntheticSegmentation",
    "VOCAugSegmentation",
    "VOCSegmentation",
    "build_eval_transform",
    "build_train_transform",
    "generate_synthetic",
    "iter_case_chunks",
    "kvasir_split",
    "make_fake_dataset",
    "window_ct",
]
