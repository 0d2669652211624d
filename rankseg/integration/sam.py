"""RankSEG adapters for the SAM family of Hugging Face Transformers (SAM, SAM-HQ, SAM2, SAM3).

SAM models predict independent binary masks (one per prompt, instance or concept), each with its own output
geometry, so every family has an explicit adapter instead of the generic helper of
:mod:`rankseg.integration.transformers`:

* :class:`Sam1` (``SamImageSegmentationOutput``, ``SamHQImageSegmentationOutput``): low-resolution mask logits
  are upsampled to the padded model input, cropped to the resized image, resized to the original image, then
  passed through a sigmoid (what ``SamImageProcessor.post_process_masks`` does before binarising).
* :class:`Sam2` (``Sam2ImageSegmentationOutput``): mask logits are resized to the original image, optionally
  with SAM2's non-overlapping constraint across objects, then passed through a sigmoid.
* :class:`Sam3` (``Sam3ImageSegmentationOutput``, ``Sam3LiteTextImageSegmentationOutput``): instance masks
  with scores and boxes (kept above a score threshold), and the semantic mask.

Each adapter has ``restore_*`` methods (differentiable probabilities) and ``postprocess*`` methods (RankSEG
masks, no gradients). RankSEG always runs in ``output_mode="multilabel"``: ``rankseg_kwargs`` may choose the
metric, solver and so on, but any other output mode is refused. Outputs are matched by class name, so this
module does not import ``transformers`` (``pip install transformers``, or the project's ``make setup``, is only
needed to run the models).

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from rankseg.integration.sam import Sam2
    >>> outputs = SimpleNamespace(pred_masks=torch.randn(1, 2, 1, 16, 16))  # (B, objects, masks, h, w)
    >>> [m.shape for m in Sam2().postprocess(outputs, original_sizes=[(40, 30)])]
    [torch.Size([2, 1, 40, 30])]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rankseg._core import RankSEG
from rankseg._validation import check_real
from rankseg.integration._common import (
    SAM_OUTPUT_CLASSES,
    SUPPORTED_PROB_DTYPES,
    check_finite,
    check_float_dtype,
    check_height_width,
    class_names,
    get_field,
    is_int_like_tensor,
    is_sequence,
    to_working,
)

# RankSEG and SUPPORTED_PROB_DTYPES are re-exported for code written against rankseg 0.0.8's module namespace.
__all__ = ["Sam1", "Sam2", "Sam3", "RankSEG", "SUPPORTED_PROB_DTYPES"]

_SIZE_ERROR = "`{name}` must be one (height, width) pair or one pair per batch item."
_SAM1_CLASSES = frozenset({"SamImageSegmentationOutput", "SamHQImageSegmentationOutput"})
_SAM2_CLASSES = frozenset({"Sam2ImageSegmentationOutput"})
_SAM3_CLASSES = frozenset({"Sam3ImageSegmentationOutput", "Sam3LiteTextImageSegmentationOutput"})
_SAM1_DEFAULT_PAD = {"height": 1024, "width": 1024}


class Sam1:
    """Adapter for SAM (v1) and SAM-HQ prompt masks.

    Args:
        rankseg_kwargs: keyword arguments of :class:`rankseg.RankSEG` (a dict, checked when used);
            ``output_mode`` may only be "multilabel".
        pad_size: the padded model input size, ``(height, width)`` or ``{"height": h, "width": w}``;
            None means 1024 x 1024 (the SAM image processors' default). Checked when used.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> outputs = SimpleNamespace(pred_masks=torch.randn(1, 1, 3, 16, 16))
        >>> probs = Sam1(pad_size=(64, 64)).restore_mask_probs(
        ...     outputs, original_sizes=[(48, 64)], reshaped_input_sizes=[(48, 64)])
        >>> probs[0].shape
        torch.Size([1, 3, 48, 64])
    """

    def __init__(self, *, rankseg_kwargs: dict | None = None, pad_size: Any = None) -> None:
        self.rankseg_kwargs = rankseg_kwargs
        self.pad_size = pad_size

    def restore_mask_probs(self, outputs: Any, *, original_sizes: Any, reshaped_input_sizes: Any) -> list[torch.Tensor]:
        """Mask probabilities at the original image size (differentiable).

        Per image: bilinear upsampling of the mask logits to ``pad_size``, crop to the reshaped (unpadded) input
        size, bilinear resize to the original size, sigmoid. Half-precision logits are computed in float32.

        Args:
            outputs: a ``SamImageSegmentationOutput`` / ``SamHQImageSegmentationOutput``, or any structured output
                or mapping with ``pred_masks`` (``iou_scores`` is not needed).
            original_sizes: the original ``(height, width)`` of every image: one pair for a batch of one, a list
                of pairs or ``{"height", "width"}`` mappings, or an integer tensor (B, 2) (the processor's
                ``original_sizes``).
            reshaped_input_sizes: the resized input size of every image before padding, in the same forms.

        Returns:
            One float tensor per image.

        Raises:
            ValueError: another SAM family's output, missing ``pred_masks``, bad shapes, non-finite values, bad
                sizes, or a reshaped size that does not fit in ``pad_size``.
            TypeError: non-tensor ``pred_masks``, non-floating dtype, non-integer sizes.

        Shape:
            - ``pred_masks`` (B, N, h, w) -> B tensors (1, N, H_i, W_i).
            - ``pred_masks`` (B, P, N, h, w) -> B tensors (P, N, H_i, W_i); (H_i, W_i) = ``original_sizes[i]``.
        """
        _check_family(outputs, _SAM1_CLASSES, "SAM1")
        pred_masks = _prompt_masks(outputs, "SAM1")
        batch_size = pred_masks.shape[0]
        original = _size_list(original_sizes, batch_size, "original_sizes")
        reshaped = _size_list(reshaped_input_sizes, batch_size, "reshaped_input_sizes")
        pad = _size_pair(_SAM1_DEFAULT_PAD if self.pad_size is None else self.pad_size, "pad_size")
        if any(height > pad[0] or width > pad[1] for height, width in reshaped):
            raise ValueError("Each `reshaped_input_sizes` pair must fit within `pad_size`.")

        probs = []
        for index in range(len(original)):
            masks = _as_batch(to_working(pred_masks[index]))
            masks = F.interpolate(masks, pad, mode="bilinear", align_corners=False)
            masks = masks[..., : reshaped[index][0], : reshaped[index][1]]
            masks = F.interpolate(masks, original[index], mode="bilinear", align_corners=False)
            probs.append(masks.sigmoid())
        return probs

    @torch.no_grad()
    def postprocess(self, outputs: Any, *, original_sizes: Any, reshaped_input_sizes: Any) -> list[torch.Tensor]:
        """RankSEG masks from :meth:`restore_mask_probs` (inference only, no gradients).

        Args:
            outputs: as for :meth:`restore_mask_probs`.
            original_sizes: as for :meth:`restore_mask_probs`.
            reshaped_input_sizes: as for :meth:`restore_mask_probs`.

        Returns:
            One bool tensor per image, each mask decided independently (multilabel RankSEG).

        Raises:
            ValueError, TypeError: bad ``rankseg_kwargs`` (checked first), and everything
                :meth:`restore_mask_probs` and :func:`rankseg.functional.rankseg` raise.

        Shape:
            - as :meth:`restore_mask_probs`: B tensors (1, N, H_i, W_i) or (P, N, H_i, W_i), bool.
        """
        probs = self.restore_mask_probs(
            outputs, original_sizes=original_sizes, reshaped_input_sizes=reshaped_input_sizes
        )
        return _predict_each(probs, self.rankseg_kwargs)


class Sam2:
    """Adapter for SAM2 prompt masks.

    Args:
        rankseg_kwargs: keyword arguments of :class:`rankseg.RankSEG` (a dict, checked when used);
            ``output_mode`` may only be "multilabel".
        apply_non_overlapping_constraints: a bool; if True, at every pixel the logits of all objects but the
            highest-scoring one are clamped to at most -10 before the sigmoid (SAM2's post-processing option).

    Raises:
        TypeError: ``apply_non_overlapping_constraints`` is not a bool.
    """

    def __init__(self, *, rankseg_kwargs: dict | None = None, apply_non_overlapping_constraints: bool = False) -> None:
        if not isinstance(apply_non_overlapping_constraints, bool):
            raise TypeError("`apply_non_overlapping_constraints` must be a bool.")
        self.rankseg_kwargs = rankseg_kwargs
        self.apply_non_overlapping_constraints = apply_non_overlapping_constraints

    def restore_mask_probs(self, outputs: Any, *, original_sizes: Any) -> list[torch.Tensor]:
        """Mask probabilities at the original image size (differentiable).

        Per image: bilinear resize of the mask logits to the original size, the optional non-overlapping
        constraint across objects (dimension 0 of each image's masks), sigmoid.

        Args:
            outputs: a ``Sam2ImageSegmentationOutput``, or any structured output or mapping with ``pred_masks``.
            original_sizes: the original ``(height, width)`` of every image (same forms as for
                :meth:`Sam1.restore_mask_probs`).

        Returns:
            One float tensor per image.

        Raises:
            ValueError: another SAM family's output, missing ``pred_masks``, bad shapes, non-finite values, bad
                sizes.
            TypeError: non-tensor ``pred_masks``, non-floating dtype, non-integer sizes.

        Shape:
            - ``pred_masks`` (B, N, h, w) -> B tensors (1, N, H_i, W_i) (the constraint has nothing to do).
            - ``pred_masks`` (B, P, N, h, w) -> B tensors (P, N, H_i, W_i) (constraint across the P objects).
        """
        _check_family(outputs, _SAM2_CLASSES, "SAM2")
        pred_masks = _prompt_masks(outputs, "SAM2")
        original = _size_list(original_sizes, pred_masks.shape[0], "original_sizes")

        probs = []
        for index, size in enumerate(original):
            masks = _as_batch(to_working(pred_masks[index]))
            masks = F.interpolate(masks, size, mode="bilinear", align_corners=False)
            if self.apply_non_overlapping_constraints:
                masks = _suppress_non_max_objects(masks)
            probs.append(masks.sigmoid())
        return probs

    @torch.no_grad()
    def postprocess(self, outputs: Any, *, original_sizes: Any) -> list[torch.Tensor]:
        """RankSEG masks from :meth:`restore_mask_probs` (inference only, no gradients).

        Args:
            outputs: as for :meth:`restore_mask_probs`.
            original_sizes: as for :meth:`restore_mask_probs`.

        Returns:
            One bool tensor per image (multilabel RankSEG).

        Raises:
            ValueError, TypeError: bad ``rankseg_kwargs`` (checked after the restoration), and everything
                :meth:`restore_mask_probs` and :func:`rankseg.functional.rankseg` raise.

        Shape:
            - as :meth:`restore_mask_probs`: B tensors (1, N, H_i, W_i) or (P, N, H_i, W_i), bool.
        """
        probs = self.restore_mask_probs(outputs, original_sizes=original_sizes)
        return _predict_each(probs, self.rankseg_kwargs)


class Sam3:
    """Adapter for SAM3 (and SAM3-LiteText) instance and semantic masks.

    Args:
        rankseg_kwargs: keyword arguments of :class:`rankseg.RankSEG` (a dict, checked when used);
            ``output_mode`` may only be "multilabel".
        threshold: the instance score threshold in [0, 1]; instances scoring strictly above it are kept
            (stored as a float).

    Raises:
        TypeError: ``threshold`` is not a real number (bool included).
        ValueError: ``threshold`` is not finite or outside [0, 1].
    """

    def __init__(self, *, rankseg_kwargs: dict | None = None, threshold: float = 0.3) -> None:
        threshold = check_real("threshold", threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in the range [0, 1]")
        self.rankseg_kwargs = rankseg_kwargs
        self.threshold = threshold

    def restore_instance_mask_probs(
        self, outputs: Any, *, target_sizes: Any = None, original_sizes: Any = None
    ) -> list[dict[str, torch.Tensor]]:
        """Scores, boxes and mask probabilities of the instances above ``threshold`` (differentiable).

        The score of a query is ``sigmoid(pred_logits) * sigmoid(presence_logits)`` (without the presence factor
        when the output has none). Boxes (xyxy, relative) are scaled to pixels and masks resized when a size is
        given; ``target_sizes`` wins over ``original_sizes``.

        Args:
            outputs: a ``Sam3ImageSegmentationOutput`` / ``Sam3LiteTextImageSegmentationOutput``, or any
                structured output or mapping with ``pred_logits``, ``pred_boxes``, ``pred_masks`` and optionally
                ``presence_logits``.
            target_sizes: optional ``(height, width)`` per image (same forms as ``original_sizes`` of
                :meth:`Sam1.restore_mask_probs`).
            original_sizes: the fallback when ``target_sizes`` is None.

        Returns:
            One dict per image with "scores", "boxes" and "mask_probs".

        Raises:
            ValueError: another SAM family's output, bad shapes, mismatched devices, non-finite values, bad sizes.
            TypeError: non-tensor fields, non-floating dtypes, non-integer sizes.

        Shape:
            - ``pred_logits`` (B, Q), ``pred_boxes`` (B, Q, 4), ``pred_masks`` (B, Q, h, w),
              ``presence_logits`` (B, 1) -> B dicts: scores (K_i,), boxes (K_i, 4), mask_probs (K_i, H_i, W_i),
              with (H_i, W_i) the requested size ((h, w) without one, or when K_i = 0).
        """
        _check_family(outputs, _SAM3_CLASSES, "SAM3")
        pred_logits = get_field(outputs, "pred_logits")
        pred_boxes = get_field(outputs, "pred_boxes")
        pred_masks = get_field(outputs, "pred_masks")
        presence_logits = get_field(outputs, "presence_logits")
        if not (isinstance(pred_logits, torch.Tensor) and isinstance(pred_boxes, torch.Tensor)):
            raise TypeError("`outputs.pred_logits` and `outputs.pred_boxes` must be torch.Tensor values.")
        if not isinstance(pred_masks, torch.Tensor):
            raise TypeError("`outputs.pred_masks` must be a torch.Tensor.")
        if presence_logits is not None and not isinstance(presence_logits, torch.Tensor):
            raise TypeError("`outputs.presence_logits` must be a torch.Tensor.")
        _check_instances(pred_logits, pred_boxes, pred_masks, presence_logits)

        sizes, size_name = _preferred_sizes(target_sizes, original_sizes)
        size_list = None if sizes is None else _size_list(sizes, pred_logits.shape[0], size_name)

        scores = to_working(pred_logits).sigmoid()
        if presence_logits is not None:
            scores = scores * to_working(presence_logits).sigmoid()
        mask_probs = to_working(pred_masks).sigmoid()
        boxes = to_working(pred_boxes)
        if size_list is not None:
            boxes = _boxes_to_pixels(boxes, size_list)

        results = []
        for index, (image_scores, image_boxes, image_masks) in enumerate(zip(scores, boxes, mask_probs)):
            keep = image_scores > self.threshold
            kept_masks = image_masks[keep]
            if size_list is not None and len(kept_masks) > 0:
                kept_masks = F.interpolate(
                    kept_masks.unsqueeze(0), size=size_list[index], mode="bilinear", align_corners=False
                ).squeeze(0)
            results.append({"scores": image_scores[keep], "boxes": image_boxes[keep], "mask_probs": kept_masks})
        return results

    def restore_semantic_mask_probs(
        self, outputs: Any, *, target_sizes: Any = None, original_sizes: Any = None
    ) -> list[torch.Tensor]:
        """Semantic mask probabilities (differentiable): sigmoid of ``semantic_seg``, then an optional resize.

        Args:
            outputs: a ``Sam3ImageSegmentationOutput`` / ``Sam3LiteTextImageSegmentationOutput``, or any
                structured output or mapping with ``semantic_seg``.
            target_sizes: optional ``(height, width)`` per image; wins over ``original_sizes``.
            original_sizes: the fallback when ``target_sizes`` is None.

        Returns:
            One float tensor per image.

        Raises:
            ValueError: another SAM family's output, missing ``semantic_seg``, bad shape, non-finite values, bad
                sizes.
            TypeError: non-tensor ``semantic_seg``, non-floating dtype, non-integer sizes.

        Shape:
            - ``semantic_seg`` (B, 1, h, w) -> B tensors (1, H_i, W_i) ((1, h, w) without sizes).
        """
        _check_family(outputs, _SAM3_CLASSES, "SAM3")
        semantic_seg = get_field(outputs, "semantic_seg")
        name = "outputs.semantic_seg"
        if semantic_seg is None:
            raise ValueError(f"`{name}` is required for SAM3 semantic mask restoration.")
        if not isinstance(semantic_seg, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor.")
        if semantic_seg.ndim != 4 or semantic_seg.shape[1] != 1:
            raise ValueError(f"`{name}` must have shape (B, 1, H, W).")
        if 0 in semantic_seg.shape[-2:]:
            raise ValueError(f"`{name}` spatial dimensions must be non-empty.")
        check_float_dtype(semantic_seg, name)
        check_finite(semantic_seg, name)

        probs = to_working(semantic_seg).sigmoid()
        batch_size = probs.shape[0]
        sizes, size_name = _preferred_sizes(target_sizes, original_sizes)
        if sizes is None:
            return [probs[index] for index in range(batch_size)]
        size_list = _size_list(sizes, batch_size, size_name)
        return [
            F.interpolate(probs[index].unsqueeze(0), size=size_list[index], mode="bilinear", align_corners=False)[0]
            for index in range(batch_size)
        ]

    @torch.no_grad()
    def postprocess_instance(
        self, outputs: Any, *, target_sizes: Any = None, original_sizes: Any = None
    ) -> list[dict[str, torch.Tensor]]:
        """RankSEG instance masks from :meth:`restore_instance_mask_probs` (inference only, no gradients).

        Args:
            outputs: as for :meth:`restore_instance_mask_probs`.
            target_sizes: as for :meth:`restore_instance_mask_probs`.
            original_sizes: as for :meth:`restore_instance_mask_probs`.

        Returns:
            One dict per image with "scores", "boxes" and "masks" (bool; each instance decided on its own).

        Raises:
            ValueError, TypeError: bad ``rankseg_kwargs`` (checked after the restoration), and everything
                :meth:`restore_instance_mask_probs` and :func:`rankseg.functional.rankseg` raise.

        Shape:
            - B dicts: scores (K_i,), boxes (K_i, 4), masks (K_i, H_i, W_i) bool.
        """
        restored = self.restore_instance_mask_probs(outputs, target_sizes=target_sizes, original_sizes=original_sizes)
        predictor = _sam_predictor(self.rankseg_kwargs)
        results = []
        for item in restored:
            probs = item["mask_probs"]
            if len(probs) == 0:
                masks = probs.to(dtype=torch.bool)
            else:
                # every instance is its own single-class image
                masks = predictor.predict(probs.unsqueeze(1)).squeeze(1)
            results.append({"scores": item["scores"], "boxes": item["boxes"], "masks": masks})
        return results

    @torch.no_grad()
    def postprocess_semantic(self, outputs: Any, *, target_sizes: Any = None, original_sizes: Any = None):
        """RankSEG semantic masks from :meth:`restore_semantic_mask_probs` (inference only, no gradients).

        Args:
            outputs: as for :meth:`restore_semantic_mask_probs`.
            target_sizes: as for :meth:`restore_semantic_mask_probs`.
            original_sizes: as for :meth:`restore_semantic_mask_probs`.

        Returns:
            One bool mask per image.

        Raises:
            ValueError, TypeError: bad ``rankseg_kwargs`` (checked after the restoration), and everything
                :meth:`restore_semantic_mask_probs` and :func:`rankseg.functional.rankseg` raise.

        Shape:
            - B tensors (H_i, W_i), bool.
        """
        restored = self.restore_semantic_mask_probs(outputs, target_sizes=target_sizes, original_sizes=original_sizes)
        predictor = _sam_predictor(self.rankseg_kwargs)
        masks = []
        for probs in restored:
            mask = predictor.predict(probs.unsqueeze(0))[0]
            masks.append(mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask)
        return masks


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _check_family(outputs: Any, accepted: frozenset[str], family: str) -> None:
    """Refuse an output recognised (by class name) as another SAM family's; unknown classes pass."""
    recognised = class_names(outputs) & SAM_OUTPUT_CLASSES
    if recognised and not recognised & accepted:
        raise ValueError(f"{family} cannot process `{min(recognised)}`; use the matching SAM-family adapter.")


def _prompt_masks(outputs: Any, family: str) -> torch.Tensor:
    """The checked ``pred_masks`` of a SAM1/SAM2 output: floating, (B, N, h, w) or (B, P, N, h, w), finite."""
    pred_masks = get_field(outputs, "pred_masks")
    name = "outputs.pred_masks"
    if pred_masks is None:
        raise ValueError(f"{family} outputs require `{name}`.")
    if not isinstance(pred_masks, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor.")
    check_float_dtype(pred_masks, name)
    if pred_masks.ndim not in (4, 5):
        raise ValueError(f"`{name}` must have shape (B, N, H, W) or (B, P, N, H, W).")
    if 0 in pred_masks.shape[1:]:
        raise ValueError(f"`{name}` non-batch dimensions must be non-empty.")
    check_finite(pred_masks, name)
    return pred_masks


def _check_instances(
    pred_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    pred_masks: torch.Tensor,
    presence_logits: torch.Tensor | None,
) -> None:
    """Dtypes, shapes and devices of the SAM3 instance fields, then their values."""
    check_float_dtype(pred_logits, "outputs.pred_logits")
    check_float_dtype(pred_boxes, "outputs.pred_boxes")
    check_float_dtype(pred_masks, "outputs.pred_masks")
    if pred_logits.ndim != 2:
        raise ValueError("`outputs.pred_logits` must have shape (B, Q).")
    if pred_boxes.ndim != 3 or pred_boxes.shape[-1] != 4:
        raise ValueError("`outputs.pred_boxes` must have shape (B, Q, 4).")
    if pred_masks.ndim != 4:
        raise ValueError("`outputs.pred_masks` must have shape (B, Q, H, W).")
    if 0 in pred_masks.shape[-2:]:
        raise ValueError("`outputs.pred_masks` spatial dimensions must be non-empty.")
    batch_queries = pred_logits.shape[:2]
    if pred_boxes.shape[:2] != batch_queries or pred_masks.shape[:2] != batch_queries:
        raise ValueError("SAM3 instance logits, boxes, and masks must have matching batch and query dimensions.")
    if pred_boxes.device != pred_logits.device or pred_masks.device != pred_logits.device:
        raise ValueError("SAM3 instance logits, boxes, and masks must be on the same device.")
    if presence_logits is not None:
        check_float_dtype(presence_logits, "outputs.presence_logits")
        if presence_logits.shape != (pred_logits.shape[0], 1):
            raise ValueError("`outputs.presence_logits` must have shape (B, 1).")
        if presence_logits.device != pred_logits.device:
            raise ValueError("`outputs.presence_logits` and other SAM3 instance outputs must be on the same device.")
    check_finite(pred_logits, "outputs.pred_logits")
    check_finite(pred_boxes, "outputs.pred_boxes")
    check_finite(pred_masks, "outputs.pred_masks")
    if presence_logits is not None:
        check_finite(presence_logits, "outputs.presence_logits")


def _preferred_sizes(target_sizes: Any, original_sizes: Any) -> tuple[Any, str]:
    """``target_sizes`` when given, else ``original_sizes``, with the name used in messages."""
    if target_sizes is not None:
        return target_sizes, "target_sizes"
    return original_sizes, "original_sizes"


def _size_pair(size: Any, name: str) -> tuple[int, int]:
    """One ``(height, width)``: a two-element sequence, a ``{"height", "width"}`` mapping or a 1-D int tensor."""
    if isinstance(size, Mapping):
        if "height" not in size or "width" not in size:
            raise ValueError(_SIZE_ERROR.format(name=name))
        size = (size["height"], size["width"])
    if isinstance(size, torch.Tensor):
        if size.ndim != 1 or size.numel() != 2:
            raise ValueError(_SIZE_ERROR.format(name=name))
        if not is_int_like_tensor(size):
            raise TypeError(f"`{name}` tensor must have an integer dtype.")
        size = size.tolist()
    if not is_sequence(size) or len(size) != 2:
        raise ValueError(_SIZE_ERROR.format(name=name))
    return check_height_width(size, name)


def _size_list(sizes: Any, batch_size: int, name: str) -> list[tuple[int, int]]:
    """One ``(height, width)`` per image; a single pair (flat sequence, mapping, 1-D tensor) counts as one image."""
    if sizes is None:
        raise ValueError(f"`{name}` is required.")
    if isinstance(sizes, torch.Tensor):
        if sizes.ndim == 1 and sizes.numel() == 2:
            entries = [sizes]
        elif sizes.ndim == 2 and sizes.shape[1] == 2:
            if not is_int_like_tensor(sizes):
                raise TypeError(f"`{name}` tensor must have an integer dtype.")
            entries = list(sizes.unbind(dim=0))
        else:
            raise ValueError(_SIZE_ERROR.format(name=name))
    elif isinstance(sizes, Mapping):
        entries = [sizes]
    elif is_sequence(sizes):
        single_pair = len(sizes) > 0 and not any(isinstance(v, (Mapping, Sequence, torch.Tensor)) for v in sizes)
        entries = [sizes] if single_pair else list(sizes)
    else:
        raise ValueError(_SIZE_ERROR.format(name=name))
    if len(entries) != batch_size:
        raise ValueError(f"`{name}` must match the batch size.")
    return [_size_pair(entry, name) for entry in entries]


def _as_batch(masks: torch.Tensor) -> torch.Tensor:
    """One image's masks as a 4-D interpolation input: (N, h, w) -> (1, N, h, w); (P, N, h, w) unchanged."""
    return masks.unsqueeze(0) if masks.ndim == 3 else masks


def _suppress_non_max_objects(masks: torch.Tensor) -> torch.Tensor:
    """SAM2's non-overlapping constraint: where an object is not the argmax over dim 0, clamp its logit to -10.

    Shape:
        - masks: (P, N, H, W) -> (P, N, H, W); unchanged when P = 1.
    """
    num_objects = masks.shape[0]
    if num_objects == 1:
        return masks
    winner = masks.argmax(dim=0, keepdim=True)
    objects = torch.arange(num_objects, device=masks.device).view(-1, 1, 1, 1)
    return torch.where(winner == objects, masks, masks.clamp(max=-10.0))


def _boxes_to_pixels(boxes: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Relative xyxy boxes scaled by (width, height, width, height) of each image.

    Shape:
        - boxes: (B, Q, 4) -> (B, Q, 4).
    """
    heights = torch.tensor([h for h, _ in sizes], dtype=boxes.dtype, device=boxes.device)
    widths = torch.tensor([w for _, w in sizes], dtype=boxes.dtype, device=boxes.device)
    scale = torch.stack([widths, heights, widths, heights], dim=1)
    return boxes * scale.unsqueeze(1)


def _sam_predictor(rankseg_kwargs: Any) -> RankSEG:
    """A multilabel :class:`RankSEG` from ``rankseg_kwargs`` (None or a dict without another output mode)."""
    if rankseg_kwargs is None:
        rankseg_kwargs = {}
    elif not isinstance(rankseg_kwargs, dict):
        raise ValueError("`rankseg_kwargs` must be a dictionary.")
    output_mode = rankseg_kwargs.get("output_mode", "multilabel")
    if not isinstance(output_mode, str):
        raise TypeError("SAM adapters require `output_mode` to be the string 'multilabel'.")
    if output_mode != "multilabel":
        raise ValueError(
            "SAM adapters require output_mode='multilabel' because prompt, instance, and semantic outputs are "
            "independent binary masks rather than semantic class channels."
        )
    return RankSEG(**{**rankseg_kwargs, "output_mode": output_mode})


def _predict_each(probs: list[torch.Tensor], rankseg_kwargs: Any) -> list[torch.Tensor]:
    """Multilabel RankSEG on every (P, N, H, W) tensor of ``probs`` (the P rows act as the batch)."""
    predictor = _sam_predictor(rankseg_kwargs)
    return [predictor.predict(image_probs) for image_probs in probs]
