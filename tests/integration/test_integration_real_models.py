"""``rankseg.integration`` on the outputs of real (tiny, randomly initialised) Hugging Face models.

Each restored probability map is checked against an independent computation: the documented formula written
out with torch ops, and where Transformers has one, the model's own image-processor post-processing (argmax
label maps, SAM mask logits, SAM3 scores/boxes/probabilities). Each ``postprocess*`` result is checked against
:func:`rankseg.functional.rankseg` applied to the restored probabilities.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

import tiny_hf_models as hf  # noqa: E402

from rankseg.functional import rankseg as rankseg_fn  # noqa: E402
from rankseg.integration import sam as rsam  # noqa: E402
from rankseg.integration import transformers as rt  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _bilinear(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _assert_exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape and actual.device == expected.device
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7)


def _unique_argmax(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax over dim 0, mask of pixels whose top two classes differ by more than float noise)."""
    top = probs.topk(2, dim=0).values
    return probs.argmax(0), (top[0] - top[1]) > 1e-5


# ---------------------------------------------------------------------------------------------- dense logits
def test_segformer_restore_is_resize_then_softmax_and_matches_the_processor_labels():
    import transformers

    outputs = hf.segformer_outputs()
    assert type(outputs).__name__ == "SemanticSegmenterOutput" and outputs.logits.shape == (2, 3, 8, 8)
    sizes = [(32, 32), (40, 24)]
    probs = rt.restore_semantic_probs(outputs, target_sizes=sizes)
    assert [p.shape for p in probs] == [(3, 32, 32), (3, 40, 24)]
    for i, size in enumerate(sizes):
        _assert_exact(probs[i], _bilinear(outputs.logits[i : i + 1], size)[0].softmax(0))
        torch.testing.assert_close(probs[i].sum(0), torch.ones(size))
    labels = transformers.SegformerImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=sizes)
    for p, label in zip(probs, labels):
        argmax, clear = _unique_argmax(p)
        assert torch.equal(argmax[clear], label[clear]) and clear.float().mean() > 0.99
    # a (B, 2) integer tensor is the same request
    same = rt.restore_semantic_probs(outputs, target_sizes=torch.tensor(sizes))
    assert all(torch.equal(a, b) for a, b in zip(probs, same))


def test_segformer_postprocess_equals_rankseg_on_restored_probs():
    outputs = hf.segformer_outputs()
    sizes = [(32, 32), (40, 24)]
    probs = rt.restore_semantic_probs(outputs, target_sizes=sizes)
    preds = rt.postprocess(outputs, target_sizes=sizes)
    for p, pred in zip(probs, preds):
        assert pred.dtype == torch.int64 and pred.shape == p.shape[1:]
        assert torch.equal(pred, rankseg_fn(p.unsqueeze(0), output_mode="multiclass")[0])
    masks = rt.postprocess(outputs, target_sizes=sizes, rankseg_kwargs={"metric": "iou", "output_mode": "multilabel"})
    for p, mask in zip(probs, masks):
        assert mask.dtype == torch.bool and mask.shape == p.shape
        assert torch.equal(mask, rankseg_fn(p.unsqueeze(0), metric="iou", output_mode="multilabel")[0])


def test_restore_is_differentiable_and_postprocess_is_not():
    model = hf.segformer()
    outputs = model(pixel_values=hf.images(1, (32, 32), 3))
    probs = rt.restore_semantic_probs(outputs, target_sizes=[(20, 20)])
    assert probs[0].requires_grad
    probs[0][1].sum().backward()
    assert model.decode_head.classifier.weight.grad is not None
    assert model.decode_head.classifier.weight.grad.abs().sum() > 0
    assert not rt.postprocess(outputs)[0].requires_grad


def test_upernet_restore_without_target_sizes_keeps_the_output_resolution():
    outputs = hf.upernet_outputs()
    assert outputs.logits.shape == (1, 4, 32, 32)
    (probs,) = rt.restore_semantic_probs(outputs, model=hf.upernet())
    _assert_exact(probs, outputs.logits[0].softmax(0))
    (pred,) = rt.postprocess(outputs, rankseg_kwargs={"metric": "acc", "solver": "argmax"})
    assert torch.equal(pred, outputs.logits[0].argmax(0))  # accuracy-optimal = argmax of the softmax
    # one channel: sigmoid, multilabel by default
    single = type(outputs)(logits=outputs.logits[:, :1])
    (p1,) = rt.restore_semantic_probs(single)
    _assert_exact(p1, outputs.logits[0, :1].sigmoid())
    (m1,) = rt.postprocess(single)
    assert m1.dtype == torch.bool and torch.equal(m1, rankseg_fn(p1.unsqueeze(0), output_mode="multilabel")[0])


# ---------------------------------------------------------------------------------------------- mask classification
def _query_semantic(class_logits, mask_logits, size, pre_size=None):
    """The documented reconstruction, written out for one image."""
    if pre_size is not None:
        mask_logits = _bilinear(mask_logits.unsqueeze(0), pre_size)[0]
    scores = torch.einsum("qc,qhw->chw", class_logits.softmax(-1)[:, :-1], mask_logits.sigmoid())
    scores = _bilinear(scores.unsqueeze(0), size)[0]
    total = scores.sum(0, keepdim=True)
    return scores / torch.where(total > 0, total, torch.ones_like(total))


def test_mask2former_restore_matches_the_formula_and_the_processor_labels():
    import transformers

    outputs = hf.mask2former_outputs()
    assert type(outputs).__name__ == "Mask2FormerForUniversalSegmentationOutput"
    sizes = [(32, 32), (20, 30)]
    probs = rt.restore_semantic_probs(outputs, target_sizes=sizes)
    for i, size in enumerate(sizes):
        expected = _query_semantic(outputs.class_queries_logits[i], outputs.masks_queries_logits[i], size, (384, 384))
        torch.testing.assert_close(probs[i], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(probs[i].sum(0), torch.ones(size))
    labels = transformers.Mask2FormerImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=sizes)
    for p, label in zip(probs, labels):
        argmax, clear = _unique_argmax(p)
        assert torch.equal(argmax[clear], label[clear]) and clear.float().mean() > 0.99
    # the model's config identifies Mask2Former when the output class does not
    generic = {
        "class_queries_logits": outputs.class_queries_logits,
        "masks_queries_logits": outputs.masks_queries_logits,
    }
    via_config = rt.restore_semantic_probs(generic, model=hf.mask2former(), target_sizes=sizes)
    assert all(torch.equal(a, b) for a, b in zip(probs, via_config))
    # without it (MaskFormer-style), no 384 x 384 pre-resize
    plain = rt.restore_semantic_probs(generic, target_sizes=sizes)
    torch.testing.assert_close(
        plain[0], _query_semantic(outputs.class_queries_logits[0], outputs.masks_queries_logits[0], sizes[0])
    )
    preds = rt.postprocess(outputs, target_sizes=sizes)
    for p, pred in zip(probs, preds):
        assert torch.equal(pred, rankseg_fn(p.unsqueeze(0))[0])


def test_detr_style_outputs_use_the_same_reconstruction():
    from transformers.models.detr.modeling_detr import DetrSegmentationOutput

    gen = torch.Generator().manual_seed(0)
    logits, masks = torch.randn(2, 4, 3, generator=gen) * 3, torch.randn(2, 4, 10, 10, generator=gen) * 3
    outputs = DetrSegmentationOutput(logits=logits, pred_masks=masks, pred_boxes=torch.rand(2, 4, 4, generator=gen))
    probs = rt.restore_semantic_probs(outputs, target_sizes=[(12, 8), (10, 10)])
    torch.testing.assert_close(probs[0], _query_semantic(logits[0], masks[0], (12, 8)))
    torch.testing.assert_close(probs[1], _query_semantic(logits[1], masks[1], (10, 10)))


# ---------------------------------------------------------------------------------------------- SAM family
def test_sam1_restore_matches_the_processor_mask_logits():
    from transformers.models.sam.modeling_sam import SamImageSegmentationOutput
    from transformers.models.sam_hq.modeling_sam_hq import SamHQImageSegmentationOutput

    outputs, sizes = hf.sam_outputs()
    assert isinstance(outputs, SamImageSegmentationOutput) and outputs.pred_masks.shape == (2, 1, 3, 16, 16)
    adapter = rsam.Sam1(pad_size={"height": 64, "width": 64})
    probs = adapter.restore_mask_probs(outputs, **sizes)
    reference = hf.sam_processor().post_process_masks(
        list(outputs.pred_masks), sizes["original_sizes"], sizes["reshaped_input_sizes"], binarize=False
    )
    assert [p.shape for p in probs] == [(1, 3, 24, 20), (1, 3, 15, 32)]
    for p, ref in zip(probs, reference):
        _assert_exact(p, ref.sigmoid())
    preds = adapter.postprocess(outputs, **sizes)
    for p, pred in zip(probs, preds):
        assert pred.dtype == torch.bool and torch.equal(pred, rankseg_fn(p, output_mode="multilabel"))
    # SAM-HQ outputs take the same path; the generic helper refuses both
    hq = SamHQImageSegmentationOutput(pred_masks=outputs.pred_masks, iou_scores=outputs.iou_scores)
    assert all(torch.equal(a, b) for a, b in zip(probs, adapter.restore_mask_probs(hq, **sizes)))
    with pytest.raises(ValueError, match="SAM-family outputs require the explicit adapters"):
        rt.postprocess(outputs)
    with pytest.raises(ValueError, match="SAM2 cannot process `SamImageSegmentationOutput`"):
        rsam.Sam2().restore_mask_probs(outputs, original_sizes=sizes["original_sizes"])


@pytest.mark.parametrize("constrained", [False, True])
def test_sam2_restore_matches_the_processor_mask_logits(constrained):
    import transformers

    outputs = hf.sam2_outputs()
    assert type(outputs).__name__ == "Sam2ImageSegmentationOutput" and outputs.pred_masks.shape == (2, 2, 1, 16, 16)
    sizes = [(40, 48), (64, 30)]
    adapter = rsam.Sam2(apply_non_overlapping_constraints=constrained, rankseg_kwargs={"metric": "iou"})
    probs = adapter.restore_mask_probs(outputs, original_sizes=sizes)
    reference = transformers.Sam2ImageProcessor().post_process_masks(
        list(outputs.pred_masks), sizes, binarize=False, apply_non_overlapping_constraints=constrained
    )
    for p, ref, size in zip(probs, reference, sizes):
        assert p.shape == (2, 1, *size)
        _assert_exact(p, ref.sigmoid())
    if constrained:  # at most one object above sigmoid(-10) per pixel
        assert ((probs[0] > 1e-4).sum(0) <= 1).all()
    for p, pred in zip(probs, adapter.postprocess(outputs, original_sizes=sizes)):
        assert torch.equal(pred, rankseg_fn(p, metric="iou", output_mode="multilabel"))


def test_sam3_instances_match_the_processor():
    import transformers

    outputs = hf.sam3_outputs()
    assert type(outputs).__name__ == "Sam3ImageSegmentationOutput"
    sizes = [(20, 24), (16, 16)]
    adapter = rsam.Sam3(threshold=0.1)
    restored = adapter.restore_instance_mask_probs(outputs, target_sizes=sizes)
    reference = transformers.Sam3ImageProcessor().post_process_instance_segmentation(
        outputs, threshold=0.1, mask_threshold=0.5, target_sizes=sizes
    )
    assert sum(len(r["scores"]) for r in restored) > 0
    for ours, ref, size in zip(restored, reference, sizes):
        _assert_exact(ours["scores"], ref["scores"])
        _assert_exact(ours["boxes"], ref["boxes"])
        assert ours["mask_probs"].shape[1:] == size or len(ours["mask_probs"]) == 0
        assert torch.equal(ours["mask_probs"] > 0.5, ref["masks"].bool())
    # score = sigmoid(pred_logits) * sigmoid(presence_logits), boxes scaled by (w, h, w, h)
    score = outputs.pred_logits.sigmoid() * outputs.presence_logits.sigmoid()
    keep = score[0] > 0.1
    _assert_exact(restored[0]["scores"], score[0][keep])
    _assert_exact(restored[0]["boxes"], outputs.pred_boxes[0][keep] * torch.tensor([24.0, 20.0, 24.0, 20.0]))
    for ours, item in zip(restored, adapter.postprocess_instance(outputs, target_sizes=sizes)):
        assert list(item) == ["scores", "boxes", "masks"] and item["masks"].dtype == torch.bool
        probs = ours["mask_probs"]
        expected = rankseg_fn(probs.unsqueeze(1), output_mode="multilabel").squeeze(1) if len(probs) else probs.bool()
        assert torch.equal(item["masks"], expected)


def test_sam3_semantic_matches_the_processor_scores():
    import transformers
    from transformers.models.sam3_lite_text.modeling_sam3_lite_text import Sam3LiteTextImageSegmentationOutput

    outputs = hf.sam3_outputs()
    sizes = [(20, 24), (16, 16)]
    adapter = rsam.Sam3(rankseg_kwargs={"metric": "dice", "smooth": 1.0})
    probs = adapter.restore_semantic_mask_probs(outputs, target_sizes=sizes)
    reference = transformers.Sam3ImageProcessor().post_process_semantic_segmentation(
        outputs, target_sizes=sizes, return_segmentation_scores=True
    )
    for p, ref in zip(probs, reference):
        _assert_exact(p, ref.segmentation_scores)
    (native,) = adapter.restore_semantic_mask_probs(outputs)[:1]
    _assert_exact(native, outputs.semantic_seg[0].sigmoid())
    for p, mask in zip(probs, adapter.postprocess_semantic(outputs, target_sizes=sizes)):
        assert mask.shape == p.shape[1:] and mask.dtype == torch.bool
        assert torch.equal(mask, rankseg_fn(p.unsqueeze(0), smooth=1.0, output_mode="multilabel")[0, 0])
    lite = Sam3LiteTextImageSegmentationOutput(semantic_seg=outputs.semantic_seg)
    assert all(torch.equal(a, b) for a, b in zip(probs, adapter.restore_semantic_mask_probs(lite, target_sizes=sizes)))


def test_sam_adapters_refuse_other_output_modes_and_wrong_families():
    outputs = hf.sam3_outputs()
    with pytest.raises(ValueError, match="SAM adapters require output_mode='multilabel'"):
        rsam.Sam3(rankseg_kwargs={"output_mode": "multiclass"}).postprocess_semantic(outputs)
    with pytest.raises(ValueError, match="SAM1 cannot process `Sam3ImageSegmentationOutput`"):
        rsam.Sam1().restore_mask_probs(outputs, original_sizes=[(4, 4)] * 2, reshaped_input_sizes=[(4, 4)] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the default path
        rsam.Sam3().postprocess_instance(outputs)
