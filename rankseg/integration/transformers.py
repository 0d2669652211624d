"""RankSEG on the outputs of Hugging Face Transformers semantic-segmentation models.

Three output layouts are understood, whatever the model class (fields are read by name, ``transformers`` itself
is never imported, so this module loads without it; install it with ``pip install transformers`` or the
project's ``make setup`` to produce the outputs):

* dense per-pixel ``logits`` (B, C, h, w): SegFormer, UPerNet, DPT, BEiT, MobileViT, ... The logits are resized
  per image (bilinear, ``align_corners=False``) and turned into probabilities: softmax over the classes, or a
  sigmoid when there is a single channel.
* mask classification, ``class_queries_logits`` (B, Q, C + 1) with ``masks_queries_logits`` (B, Q, h, w):
  MaskFormer, Mask2Former, OneFormer. Per query, the class softmax without its last ("no object") entry
  weighs the sigmoid of the query mask; the sum over queries is resized and renormalised to one per pixel.
  Mask2Former masks are first resized to 384 x 384, as its image processor does.
* DETR-style ``logits`` (B, Q, C + 1) with ``pred_masks`` (B, Q, h, w): the same reconstruction.

SAM-family outputs need the adapters of :mod:`rankseg.integration.sam`, EoMT outputs need processor metadata
this helper does not have, and ``return_dict=False`` tuples carry no field names; all three are refused.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from rankseg.integration import transformers as rt
    >>> outputs = SimpleNamespace(logits=torch.randn(2, 3, 16, 16))
    >>> [p.shape for p in rt.restore_semantic_probs(outputs, target_sizes=[(32, 32), (20, 24)])]
    [torch.Size([3, 32, 32]), torch.Size([3, 20, 24])]
    >>> [m.dtype for m in rt.postprocess(outputs)]
    [torch.int64, torch.int64]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rankseg._core import RankSEG
from rankseg.integration._common import (
    SAM_OUTPUT_CLASSES,
    SUPPORTED_PROB_DTYPES,
    check_finite,
    check_float_dtype,
    check_height_width,
    class_names,
    declares_field,
    get_field,
    is_instance_named,
    is_int_like_tensor,
    is_sequence,
    to_working,
    working_dtype,
)

# Re-exported for code written against rankseg 0.0.8, whose module namespace holds these two names.
__all__ = ["restore_semantic_probs", "postprocess", "RankSEG", "SUPPORTED_PROB_DTYPES"]

_TARGET_SIZES_ERROR = (
    "`target_sizes` must be None, a list of positive-integer (height, width) pairs, "
    "or an integer tensor of shape (B, 2)."
)
_SAM_MESSAGE = (
    "SAM-family outputs require the explicit adapters from `rankseg.integration.sam` (`Sam1`, `Sam2`, or `Sam3`)."
)
_EOMT_MESSAGE = (
    "EOMT outputs require processor-specific resizing, unpadding, and optional patch merge logic using the processor "
    "`size` and patch metadata. This helper does not support EOMT in this release."
)
_MASK2FORMER_MASK_SIZE = (384, 384)


# ---------------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------------


def restore_semantic_probs(outputs: Any, *, model: Any = None, target_sizes: Any = None) -> list[torch.Tensor]:
    """Per-image class probability maps from a Transformers segmentation output.

    The result is differentiable with respect to the output tensors. Half-precision outputs are computed in
    float32; float64 outputs stay float64. Everything stays on the outputs' device.

    Args:
        outputs: a structured output (``ModelOutput``, mapping or namespace) with dense ``logits``, or
            ``class_queries_logits`` + ``masks_queries_logits``, or DETR-style ``logits`` + ``pred_masks``.
        model: the model that produced ``outputs``, optional. Only its ``config`` is looked at, to recognise
            Mask2Former (384 x 384 mask resize) or EoMT (refused) when the output class does not tell.
        target_sizes: None (keep the model's output resolution), a list of one positive ``(height, width)``
            pair per image (ints, or 1-D integer tensors of two elements), or an integer tensor (B, 2).

    Returns:
        One float tensor (C, H, W) per image: softmax probabilities (dense logits with C > 1), sigmoid
        probabilities (C = 1), or query scores normalised to sum to one per pixel (pixels whose scores are all
        zero stay zero; with C = 1 the score is clamped to [0, 1] instead).

    Raises:
        ValueError: unsupported, SAM-family, EoMT or tuple outputs; bad shapes, non-finite values, bad
            ``target_sizes``.
        TypeError: non-tensor fields, non-floating dtypes, non-integer sizes.

    Shape:
        - dense ``logits``: (B, C, h, w) -> B tensors (C, H, W).
        - ``class_queries_logits`` (B, Q, C + 1), ``masks_queries_logits`` (B, Q, h, w) -> B tensors (C, H, W).
        - DETR ``logits`` (B, Q, C + 1), ``pred_masks`` (B, Q, h, w) -> B tensors (C, H, W).
        - (H, W) is ``target_sizes[i]``, or (h, w) when ``target_sizes`` is None.
    """
    _refuse_sam_family(outputs)

    class_logits = get_field(outputs, "class_queries_logits")
    mask_logits = get_field(outputs, "masks_queries_logits")
    if class_logits is not None and mask_logits is not None:
        return _from_mask_classification(outputs, model, class_logits, mask_logits, target_sizes)

    logits = get_field(outputs, "logits")
    pred_masks = get_field(outputs, "pred_masks")
    if logits is not None and pred_masks is not None:
        return _from_detr_masks(logits, pred_masks, target_sizes)
    if logits is not None:
        return _from_dense_logits(logits, target_sizes)
    if pred_masks is not None:
        raise ValueError(
            "Outputs with only `pred_masks` require model-specific semantic reconstruction and are not supported."
        )
    raise ValueError("Unsupported outputs structure for semantic probability restoration.")


@torch.no_grad()
def postprocess(
    outputs: Any,
    *,
    model: Any = None,
    target_sizes: Any = None,
    rankseg_kwargs: dict | None = None,
) -> list[torch.Tensor]:
    """RankSEG predictions from a Transformers segmentation output (inference only, no gradients).

    The probabilities of :func:`restore_semantic_probs` go through one :class:`rankseg.RankSEG` image by image.
    Without an ``output_mode`` in ``rankseg_kwargs``, it is "multiclass" when the first image has more than one
    class channel and "multilabel" otherwise.

    Args:
        outputs: as for :func:`restore_semantic_probs`.
        model: as for :func:`restore_semantic_probs`.
        target_sizes: as for :func:`restore_semantic_probs`.
        rankseg_kwargs: keyword arguments of :class:`rankseg.RankSEG` (a dict), e.g.
            ``{"metric": "iou"}``; they are checked when the first image is processed.

    Returns:
        One prediction per image: an int64 label map (H, W) in multiclass mode, bool masks (C, H, W) in
        multilabel mode. An empty batch gives an empty list (``rankseg_kwargs`` is then not looked at).

    Raises:
        ValueError: ``rankseg_kwargs`` is not a dict; everything :func:`restore_semantic_probs` and
            :func:`rankseg.functional.rankseg` raise.

    Shape:
        - outputs as in :func:`restore_semantic_probs` -> B tensors (H, W) (multiclass) or (C, H, W)
          (multilabel).
    """
    probs = restore_semantic_probs(outputs, model=model, target_sizes=target_sizes)
    if not probs:
        return []
    default_mode = "multilabel" if probs[0].shape[0] == 1 else "multiclass"
    predictor = RankSEG(**_with_default_output_mode(rankseg_kwargs, default_mode))
    return [predictor.predict(prob.unsqueeze(0))[0] for prob in probs]


# ---------------------------------------------------------------------------------------------------------------
# the three output layouts
# ---------------------------------------------------------------------------------------------------------------


def _from_dense_logits(logits: Any, target_sizes: Any) -> list[torch.Tensor]:
    name = "outputs.logits"
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor.")
    check_float_dtype(logits, name)
    if logits.ndim != 4:
        raise ValueError(f"`{name}` must have shape (B, C, H, W).")
    if logits.shape[1] == 0:
        raise ValueError(f"`{name}` must contain at least one class channel.")
    if 0 in logits.shape[-2:]:
        raise ValueError(f"`{name}` spatial dimensions must be non-empty.")
    check_finite(logits, name)
    sizes = _target_size_list(target_sizes, logits.shape[0])
    per_image = _split_and_resize(to_working(logits), sizes)
    return [image.sigmoid() if image.shape[0] == 1 else image.softmax(dim=0) for image in per_image]


def _from_mask_classification(
    outputs: Any, model: Any, class_logits: Any, mask_logits: Any, target_sizes: Any
) -> list[torch.Tensor]:
    if (
        declares_field(outputs, "patch_offsets")
        or is_instance_named(outputs, "EomtForUniversalSegmentationOutput")
        or _config_is(model, "EomtConfig", "eomt")
    ):
        raise ValueError(_EOMT_MESSAGE)
    if not (isinstance(class_logits, torch.Tensor) and isinstance(mask_logits, torch.Tensor)):
        raise TypeError("`class_queries_logits` and `masks_queries_logits` must be torch.Tensor values.")
    _check_query_pair(class_logits, mask_logits, "outputs.class_queries_logits", "outputs.masks_queries_logits")
    dtype = working_dtype(class_logits, mask_logits)
    class_logits, mask_logits = class_logits.to(dtype=dtype), mask_logits.to(dtype=dtype)
    sizes = _target_size_list(target_sizes, class_logits.shape[0])
    is_mask2former = _config_is(model, "Mask2FormerConfig", "mask2former") or is_instance_named(
        outputs, "Mask2FormerForUniversalSegmentationOutput"
    )
    if is_mask2former and mask_logits.shape[-2:] != _MASK2FORMER_MASK_SIZE:
        # Mask2FormerImageProcessor.post_process_semantic_segmentation upsamples the query masks to 384 x 384
        # before combining them; do the same so the probabilities match its label maps.
        mask_logits = F.interpolate(mask_logits, size=_MASK2FORMER_MASK_SIZE, mode="bilinear", align_corners=False)
    return _combine_queries(class_logits, mask_logits, sizes)


def _from_detr_masks(logits: Any, pred_masks: Any, target_sizes: Any) -> list[torch.Tensor]:
    if not (isinstance(logits, torch.Tensor) and isinstance(pred_masks, torch.Tensor)):
        raise TypeError("`logits` and `pred_masks` must be torch.Tensor values.")
    _check_query_pair(logits, pred_masks, "outputs.logits", "outputs.pred_masks")
    dtype = working_dtype(logits, pred_masks)
    logits, pred_masks = logits.to(dtype=dtype), pred_masks.to(dtype=dtype)
    sizes = _target_size_list(target_sizes, logits.shape[0])
    # DETR and its variants (Conditional DETR, ...) also end every query's class logits with "no object".
    return _combine_queries(logits, pred_masks, sizes)


def _combine_queries(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, sizes: list[tuple[int, int]] | None
) -> list[torch.Tensor]:
    """Sum over queries of P(class | query) * P(pixel in mask | query), resized and normalised per pixel.

    Shape:
        - class_logits: (B, Q, C + 1), mask_logits: (B, Q, h, w) -> B tensors (C, H, W).
    """
    class_probs = class_logits.softmax(dim=-1)[..., :-1]
    mask_probs = mask_logits.sigmoid()
    scores = torch.einsum("bqc,bqhw->bchw", class_probs, mask_probs)
    return [_normalise_over_classes(image) for image in _split_and_resize(scores, sizes)]


def _normalise_over_classes(scores: torch.Tensor) -> torch.Tensor:
    """Class scores (C, H, W) -> a distribution over classes at every pixel with a positive total.

    A single channel is clamped to [0, 1] (dividing it by itself would give 1 everywhere). A pixel whose total is
    exactly zero has no class information and stays all-zero; every positive total is divided out, however
    small, so tiny float64 scores still become a distribution.
    """
    if scores.shape[0] == 1:
        return scores.clamp(min=0.0, max=1.0)
    total = scores.sum(dim=0, keepdim=True)
    return scores / torch.where(total > 0, total, torch.ones_like(total))


# ---------------------------------------------------------------------------------------------------------------
# checks and small helpers
# ---------------------------------------------------------------------------------------------------------------


def _refuse_sam_family(outputs: Any) -> None:
    """SAM, SAM-HQ, SAM2 and SAM3 outputs, recognised by class name or by their characteristic fields."""
    sam_class = bool(class_names(outputs) & SAM_OUTPUT_CLASSES)
    pred_masks = get_field(outputs, "pred_masks")
    prompt_masks = pred_masks is not None and get_field(outputs, "iou_scores") is not None
    sam3_instances = (
        pred_masks is not None
        and get_field(outputs, "pred_logits") is not None
        and get_field(outputs, "pred_boxes") is not None
    )
    sam3_semantic = get_field(outputs, "semantic_seg") is not None
    if sam_class or prompt_masks or sam3_instances or sam3_semantic:
        raise ValueError(_SAM_MESSAGE)


def _check_query_pair(class_logits: torch.Tensor, mask_logits: torch.Tensor, class_name: str, mask_name: str) -> None:
    """(B, Q, C + 1) class logits with at least one real class, and (B, Q, h, w) mask logits beside them."""
    check_float_dtype(class_logits, class_name)
    check_float_dtype(mask_logits, mask_name)
    if class_logits.ndim != 3:
        raise ValueError(f"`{class_name}` must have shape (B, Q, C + 1).")
    if mask_logits.ndim != 4:
        raise ValueError(f"`{mask_name}` must have shape (B, Q, H, W).")
    if class_logits.shape[-1] < 2:
        raise ValueError(f"`{class_name}` must contain at least one semantic class and the no-object class.")
    if 0 in mask_logits.shape[-2:]:
        raise ValueError(f"`{mask_name}` spatial dimensions must be non-empty.")
    if class_logits.shape[:2] != mask_logits.shape[:2]:
        raise ValueError(f"`{class_name}` and `{mask_name}` must have matching batch and query dimensions.")
    if class_logits.device != mask_logits.device:
        raise ValueError(f"`{class_name}` and `{mask_name}` must be on the same device.")
    check_finite(class_logits, class_name)
    check_finite(mask_logits, mask_name)


def _config_is(model: Any, config_class: str, model_type: str) -> bool:
    """Whether ``model.config`` is a ``config_class`` (by name) or declares ``model_type``."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    if is_instance_named(config, config_class):
        return True
    declared = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    return declared == model_type


def _target_size_list(target_sizes: Any, batch_size: int) -> list[tuple[int, int]] | None:
    """``target_sizes`` as one ``(height, width)`` tuple of positive ints per image, or None."""
    if target_sizes is None:
        return None
    if isinstance(target_sizes, torch.Tensor):
        if target_sizes.ndim != 2 or target_sizes.shape[1] != 2:
            raise ValueError(_TARGET_SIZES_ERROR)
        if not is_int_like_tensor(target_sizes):
            raise TypeError("`target_sizes` tensor must have an integer dtype.")
        target_sizes = target_sizes.tolist()
    if not is_sequence(target_sizes):
        raise ValueError(_TARGET_SIZES_ERROR)
    if len(target_sizes) != batch_size:
        raise ValueError("`target_sizes` must contain one (height, width) pair per batch item.")
    pairs = []
    for size in target_sizes:
        if isinstance(size, torch.Tensor):
            if size.ndim != 1 or size.numel() != 2:
                raise ValueError(_TARGET_SIZES_ERROR)
            size = size.tolist()
        elif not is_sequence(size) or len(size) != 2:
            raise ValueError(_TARGET_SIZES_ERROR)
        pairs.append(check_height_width(size, "target_sizes"))
    return pairs


def _split_and_resize(batch: torch.Tensor, sizes: list[tuple[int, int]] | None) -> list[torch.Tensor]:
    """The images of ``batch``, each bilinearly resized to its target size when it differs.

    Shape:
        - batch: (B, C, h, w) -> B tensors (C, H_i, W_i) ((C, h, w) when ``sizes`` is None).
    """
    if sizes is None:
        return list(batch.unbind(dim=0))
    images = []
    for index, size in enumerate(sizes):
        image = batch[index : index + 1]
        if image.shape[-2:] != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        images.append(image[0])
    return images


def _with_default_output_mode(rankseg_kwargs: Any, default_mode: str) -> dict:
    """A copy-on-write of ``rankseg_kwargs`` (a dict or None) with ``output_mode`` defaulted."""
    if rankseg_kwargs is None:
        rankseg_kwargs = {}
    elif not isinstance(rankseg_kwargs, dict):
        raise ValueError("`rankseg_kwargs` must be a dictionary.")
    if "output_mode" in rankseg_kwargs:
        return rankseg_kwargs
    return {**rankseg_kwargs, "output_mode": default_mode}
