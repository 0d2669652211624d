"""Every error message of ``rankseg.integration`` (the messages of rankseg 0.0.8), each triggered by a bad input.

The inputs are plain namespaces and dicts (no ``transformers`` needed): the adapters read fields by name and
recognise output families by class name.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rankseg.integration import sam as rsam
from rankseg.integration import transformers as rt


def named(class_name: str, **fields):
    """An output object whose class is called ``class_name``."""
    return type(class_name, (SimpleNamespace,), {})(**fields)


def t(*shape, dtype=torch.float32, fill=None, device="cpu"):
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    if fill is not None:
        x.view(-1)[0] = fill
    return x


DENSE = SimpleNamespace(logits=t(2, 3, 4, 4))
QUERY = dict(class_queries_logits=t(1, 2, 3), masks_queries_logits=t(1, 2, 4, 4))
S1 = named("SamImageSegmentationOutput", pred_masks=t(1, 2, 4, 4))
S2 = named("Sam2ImageSegmentationOutput", pred_masks=t(1, 2, 1, 4, 4))
S3_FIELDS = dict(pred_logits=t(2, 3), pred_boxes=t(2, 3, 4), pred_masks=t(2, 3, 4, 4), presence_logits=t(2, 1))
S3 = named("Sam3ImageSegmentationOutput", semantic_seg=t(2, 1, 4, 4), **S3_FIELDS)

TS = (
    "`target_sizes` must be None, a list of positive-integer (height, width) pairs, "
    "or an integer tensor of shape (B, 2)."
)
SAM_FAMILY = (
    "SAM-family outputs require the explicit adapters from `rankseg.integration.sam` (`Sam1`, `Sam2`, or `Sam3`)."
)
EOMT = (
    "EOMT outputs require processor-specific resizing, unpadding, and optional patch merge logic using the processor "
    "`size` and patch metadata. This helper does not support EOMT in this release."
)
SAM_MODE = (
    "SAM adapters require output_mode='multilabel' because prompt, instance, and semantic outputs are independent "
    "binary masks rather than semantic class channels."
)


def restore(outputs, **kw):
    return lambda: rt.restore_semantic_probs(outputs, **kw)


def q(class_logits, mask_logits, names=("class_queries_logits", "masks_queries_logits")):
    return restore({names[0]: class_logits, names[1]: mask_logits})


def s1(outputs=S1, original_sizes=(4, 4), reshaped_input_sizes=(4, 4), **ctor):
    return lambda: rsam.Sam1(**ctor).restore_mask_probs(
        outputs, original_sizes=original_sizes, reshaped_input_sizes=reshaped_input_sizes
    )


def s3i(**changes):
    return lambda: rsam.Sam3().restore_instance_mask_probs(
        named("Sam3ImageSegmentationOutput", **{**S3_FIELDS, **changes})
    )


def s3s(semantic_seg, **kw):
    return lambda: rsam.Sam3().restore_semantic_mask_probs(
        named("Sam3ImageSegmentationOutput", semantic_seg=semantic_seg), **kw
    )


CASES = [
    # ----------------------------------------------------------------------------------- transformers helper
    (
        "tuple outputs",
        restore((t(1, 2, 4, 4),)),
        ValueError,
        "Tuple-style outputs are not supported. Pass structured outputs with named fields.",
    ),
    ("sam class", restore(named("Sam2ImageSegmentationOutput", logits=t(1, 2, 4, 4))), ValueError, SAM_FAMILY),
    ("sam prompt fields", restore({"pred_masks": t(1, 2, 4, 4), "iou_scores": t(1, 2)}), ValueError, SAM_FAMILY),
    ("sam3 instance fields", restore(SimpleNamespace(**S3_FIELDS)), ValueError, SAM_FAMILY),
    ("sam3 semantic field", restore({"semantic_seg": t(1, 1, 4, 4), "logits": t(1, 2, 4, 4)}), ValueError, SAM_FAMILY),
    ("eomt field", restore({**QUERY, "patch_offsets": None}), ValueError, EOMT),
    ("eomt class", restore(named("EomtForUniversalSegmentationOutput", **QUERY)), ValueError, EOMT),
    ("eomt config", restore(QUERY, model=SimpleNamespace(config={"model_type": "eomt"})), ValueError, EOMT),
    (
        "query not tensors",
        q([[0.0, 1.0]], t(1, 2, 4, 4)),
        TypeError,
        "`class_queries_logits` and `masks_queries_logits` must be torch.Tensor values.",
    ),
    (
        "detr not tensors",
        restore({"logits": "x", "pred_masks": t(1, 2, 4, 4)}),
        TypeError,
        "`logits` and `pred_masks` must be torch.Tensor values.",
    ),
    ("dense not tensor", restore({"logits": [[1.0]]}), TypeError, "`outputs.logits` must be a torch.Tensor."),
    (
        "only pred_masks",
        restore({"pred_masks": t(1, 2, 4, 4)}),
        ValueError,
        "Outputs with only `pred_masks` require model-specific semantic reconstruction and are not supported.",
    ),
    ("no fields", restore({}), ValueError, "Unsupported outputs structure for semantic probability restoration."),
    (
        "dense dtype",
        restore({"logits": t(1, 2, 4, 4, dtype=torch.int64)}),
        TypeError,
        "`outputs.logits` must have a real floating-point dtype.",
    ),
    ("dense ndim", restore({"logits": t(2, 4, 4)}), ValueError, "`outputs.logits` must have shape (B, C, H, W)."),
    (
        "dense no class",
        restore({"logits": t(1, 0, 4, 4)}),
        ValueError,
        "`outputs.logits` must contain at least one class channel.",
    ),
    (
        "dense empty",
        restore({"logits": t(1, 2, 0, 4)}),
        ValueError,
        "`outputs.logits` spatial dimensions must be non-empty.",
    ),
    (
        "dense meta",
        restore({"logits": t(1, 2, 4, 4, device="meta")}),
        ValueError,
        "`outputs.logits` must contain materialized, finite values.",
    ),
    (
        "dense nan",
        restore({"logits": t(1, 2, 4, 4, fill=float("nan"))}),
        ValueError,
        "`outputs.logits` must contain only finite values.",
    ),
    (
        "query class dtype",
        q(t(1, 2, 3, dtype=torch.bool), t(1, 2, 4, 4)),
        TypeError,
        "`outputs.class_queries_logits` must have a real floating-point dtype.",
    ),
    (
        "query mask dtype",
        q(t(1, 2, 3), t(1, 2, 4, 4, dtype=torch.complex64)),
        TypeError,
        "`outputs.masks_queries_logits` must have a real floating-point dtype.",
    ),
    (
        "query class ndim",
        q(t(2, 3), t(1, 2, 4, 4)),
        ValueError,
        "`outputs.class_queries_logits` must have shape (B, Q, C + 1).",
    ),
    (
        "query mask ndim",
        q(t(1, 2, 3), t(1, 2, 4)),
        ValueError,
        "`outputs.masks_queries_logits` must have shape (B, Q, H, W).",
    ),
    (
        "query no class",
        q(t(1, 2, 1), t(1, 2, 4, 4)),
        ValueError,
        "`outputs.class_queries_logits` must contain at least one semantic class and the no-object class.",
    ),
    (
        "query empty",
        q(t(1, 2, 3), t(1, 2, 4, 0)),
        ValueError,
        "`outputs.masks_queries_logits` spatial dimensions must be non-empty.",
    ),
    (
        "query mismatch",
        q(t(1, 2, 3), t(1, 3, 4, 4)),
        ValueError,
        "`outputs.class_queries_logits` and `outputs.masks_queries_logits` must have matching batch and query "
        "dimensions.",
    ),
    (
        "query device",
        q(t(1, 2, 3), t(1, 2, 4, 4, device="meta")),
        ValueError,
        "`outputs.class_queries_logits` and `outputs.masks_queries_logits` must be on the same device.",
    ),
    (
        "query meta",
        q(t(1, 2, 3, device="meta"), t(1, 2, 4, 4, device="meta")),
        ValueError,
        "`outputs.class_queries_logits` must contain materialized, finite values.",
    ),
    (
        "query class inf",
        q(t(1, 2, 3, fill=float("inf")), t(1, 2, 4, 4)),
        ValueError,
        "`outputs.class_queries_logits` must contain only finite values.",
    ),
    (
        "query mask nan",
        q(t(1, 2, 3), t(1, 2, 4, 4, fill=float("nan"))),
        ValueError,
        "`outputs.masks_queries_logits` must contain only finite values.",
    ),
    (
        "detr logits ndim",
        q(t(2, 3), t(1, 2, 4, 4), ("logits", "pred_masks")),
        ValueError,
        "`outputs.logits` must have shape (B, Q, C + 1).",
    ),
    (
        "detr masks dtype",
        q(t(1, 2, 3), t(1, 2, 4, 4, dtype=torch.int64), ("logits", "pred_masks")),
        TypeError,
        "`outputs.pred_masks` must have a real floating-point dtype.",
    ),
    (
        "detr mismatch",
        q(t(2, 2, 3), t(1, 2, 4, 4), ("logits", "pred_masks")),
        ValueError,
        "`outputs.logits` and `outputs.pred_masks` must have matching batch and query dimensions.",
    ),
    (
        "detr masks meta",
        q(t(1, 2, 3, device="meta"), t(1, 2, 4, 4, device="meta"), ("logits", "pred_masks")),
        ValueError,
        "`outputs.logits` must contain materialized, finite values.",
    ),
    (
        "target float tensor",
        restore(DENSE, target_sizes=torch.ones(2, 2)),
        TypeError,
        "`target_sizes` tensor must have an integer dtype.",
    ),
    ("target tensor shape", restore(DENSE, target_sizes=torch.ones(2, 3, dtype=torch.int64)), ValueError, TS),
    ("target not a list", restore(DENSE, target_sizes="44"), ValueError, TS),
    (
        "target count",
        restore(DENSE, target_sizes=[(4, 4)]),
        ValueError,
        "`target_sizes` must contain one (height, width) pair per batch item.",
    ),
    ("target pair length", restore(DENSE, target_sizes=[(4, 4), (4, 4, 4)]), ValueError, TS),
    ("target pair not a pair", restore(DENSE, target_sizes=[4, 4]), ValueError, TS),
    ("target pair tensor", restore(DENSE, target_sizes=[(4, 4), torch.tensor([4, 4, 4])]), ValueError, TS),
    (
        "target bool",
        restore(DENSE, target_sizes=[(4, 4), (True, 4)]),
        TypeError,
        "Each `target_sizes` height and width must be an integer.",
    ),
    (
        "target float",
        restore(DENSE, target_sizes=[(4, 4), torch.tensor([4.0, 4.0])]),
        TypeError,
        "Each `target_sizes` height and width must be an integer.",
    ),
    (
        "target zero",
        restore(DENSE, target_sizes=[(4, 4), (0, 4)]),
        ValueError,
        "Each `target_sizes` height and width must be positive.",
    ),
    (
        "rankseg_kwargs not a dict",
        lambda: rt.postprocess(DENSE, rankseg_kwargs=[("metric", "iou")]),
        ValueError,
        "`rankseg_kwargs` must be a dictionary.",
    ),
    (
        "rankseg_kwargs refused by RankSEG",
        lambda: rt.postprocess(DENSE, rankseg_kwargs={"metric": "f1"}),
        ValueError,
        "Unknown metric: f1",
    ),
    # ----------------------------------------------------------------------------------- SAM adapters
    (
        "sam tuple",
        s1(outputs=(t(1, 2, 4, 4),)),
        ValueError,
        "Tuple-style outputs are not supported. Pass structured outputs with named fields.",
    ),
    (
        "sam1 wrong family",
        s1(outputs=named("Sam3ImageSegmentationOutput", pred_masks=t(1, 2, 4, 4))),
        ValueError,
        "SAM1 cannot process `Sam3ImageSegmentationOutput`; use the matching SAM-family adapter.",
    ),
    (
        "sam2 wrong family",
        lambda: rsam.Sam2().restore_mask_probs(S1, original_sizes=(4, 4)),
        ValueError,
        "SAM2 cannot process `SamImageSegmentationOutput`; use the matching SAM-family adapter.",
    ),
    (
        "sam3 wrong family",
        lambda: rsam.Sam3().restore_semantic_mask_probs(S2),
        ValueError,
        "SAM3 cannot process `Sam2ImageSegmentationOutput`; use the matching SAM-family adapter.",
    ),
    ("sam1 no masks", s1(outputs={"iou_scores": t(1, 2)}), ValueError, "SAM1 outputs require `outputs.pred_masks`."),
    (
        "sam2 no masks",
        lambda: rsam.Sam2().restore_mask_probs({}, original_sizes=(4, 4)),
        ValueError,
        "SAM2 outputs require `outputs.pred_masks`.",
    ),
    (
        "sam masks not tensor",
        s1(outputs={"pred_masks": [[0.0]]}),
        TypeError,
        "`outputs.pred_masks` must be a torch.Tensor.",
    ),
    (
        "sam masks dtype",
        s1(outputs={"pred_masks": t(1, 2, 4, 4, dtype=torch.int64)}),
        TypeError,
        "`outputs.pred_masks` must have a real floating-point dtype.",
    ),
    (
        "sam masks ndim",
        s1(outputs={"pred_masks": t(1, 4, 4)}),
        ValueError,
        "`outputs.pred_masks` must have shape (B, N, H, W) or (B, P, N, H, W).",
    ),
    (
        "sam masks empty",
        s1(outputs={"pred_masks": t(1, 0, 4, 4)}),
        ValueError,
        "`outputs.pred_masks` non-batch dimensions must be non-empty.",
    ),
    (
        "sam masks meta",
        s1(outputs={"pred_masks": t(1, 2, 4, 4, device="meta")}),
        ValueError,
        "`outputs.pred_masks` must contain materialized, finite values.",
    ),
    (
        "sam masks nan",
        s1(outputs={"pred_masks": t(1, 2, 4, 4, fill=float("nan"))}),
        ValueError,
        "`outputs.pred_masks` must contain only finite values.",
    ),
    ("sizes missing", s1(original_sizes=None), ValueError, "`original_sizes` is required."),
    ("sizes count", s1(original_sizes=[(4, 4), (4, 4)]), ValueError, "`original_sizes` must match the batch size."),
    (
        "sizes not a size",
        s1(reshaped_input_sizes="44"),
        ValueError,
        "`reshaped_input_sizes` must be one (height, width) pair or one pair per batch item.",
    ),
    (
        "sizes ndarray",
        s1(original_sizes=np.array([4, 4])),
        ValueError,
        "`original_sizes` must be one (height, width) pair or one pair per batch item.",
    ),
    (
        "sizes tensor shape",
        s1(original_sizes=torch.tensor([4, 4, 4])),
        ValueError,
        "`original_sizes` must be one (height, width) pair or one pair per batch item.",
    ),
    (
        "sizes pair length",
        s1(original_sizes=(4, 4, 4)),
        ValueError,
        "`original_sizes` must be one (height, width) pair or one pair per batch item.",
    ),
    (
        "sizes map keys",
        s1(original_sizes={"height": 4}),
        ValueError,
        "`original_sizes` must be one (height, width) pair or one pair per batch item.",
    ),
    (
        "sizes 2d float tensor",
        s1(original_sizes=torch.ones(1, 2)),
        TypeError,
        "`original_sizes` tensor must have an integer dtype.",
    ),
    (
        "sizes 1d bool tensor",
        s1(original_sizes=torch.ones(2, dtype=torch.bool)),
        TypeError,
        "`original_sizes` tensor must have an integer dtype.",
    ),
    (
        "sizes float",
        s1(original_sizes=(4.0, 4)),
        TypeError,
        "Each `original_sizes` height and width must be an integer.",
    ),
    (
        "sizes negative",
        s1(reshaped_input_sizes=(4, -4)),
        ValueError,
        "Each `reshaped_input_sizes` height and width must be positive.",
    ),
    (
        "pad_size bad",
        s1(pad_size="16"),
        ValueError,
        "`pad_size` must be one (height, width) pair or one pair per batch item.",
    ),
    ("pad_size zero", s1(pad_size=(0, 16)), ValueError, "Each `pad_size` height and width must be positive."),
    (
        "pad_size float tensor",
        s1(pad_size=torch.tensor([16.0, 16.0])),
        TypeError,
        "`pad_size` tensor must have an integer dtype.",
    ),
    (
        "reshaped beyond pad",
        s1(pad_size=(8, 8), reshaped_input_sizes=(8, 9)),
        ValueError,
        "Each `reshaped_input_sizes` pair must fit within `pad_size`.",
    ),
    (
        "sam2 flag",
        lambda: rsam.Sam2(apply_non_overlapping_constraints=1),
        TypeError,
        "`apply_non_overlapping_constraints` must be a bool.",
    ),
    ("threshold type", lambda: rsam.Sam3(threshold="0.3"), TypeError, "threshold must be a real number"),
    ("threshold bool", lambda: rsam.Sam3(threshold=True), TypeError, "threshold must be a real number"),
    ("threshold nan", lambda: rsam.Sam3(threshold=float("nan")), ValueError, "threshold must be finite"),
    ("threshold range", lambda: rsam.Sam3(threshold=1.5), ValueError, "threshold must be in the range [0, 1]"),
    (
        "sam3 logits not tensors",
        s3i(pred_boxes=None),
        TypeError,
        "`outputs.pred_logits` and `outputs.pred_boxes` must be torch.Tensor values.",
    ),
    ("sam3 masks not tensor", s3i(pred_masks="x"), TypeError, "`outputs.pred_masks` must be a torch.Tensor."),
    (
        "sam3 presence not tensor",
        s3i(presence_logits=[0.5]),
        TypeError,
        "`outputs.presence_logits` must be a torch.Tensor.",
    ),
    (
        "sam3 logits dtype",
        s3i(pred_logits=t(2, 3, dtype=torch.int64)),
        TypeError,
        "`outputs.pred_logits` must have a real floating-point dtype.",
    ),
    (
        "sam3 boxes dtype",
        s3i(pred_boxes=t(2, 3, 4, dtype=torch.bool)),
        TypeError,
        "`outputs.pred_boxes` must have a real floating-point dtype.",
    ),
    (
        "sam3 masks dtype",
        s3i(pred_masks=t(2, 3, 4, 4, dtype=torch.uint8)),
        TypeError,
        "`outputs.pred_masks` must have a real floating-point dtype.",
    ),
    (
        "sam3 presence dtype",
        s3i(presence_logits=t(2, 1, dtype=torch.int64)),
        TypeError,
        "`outputs.presence_logits` must have a real floating-point dtype.",
    ),
    ("sam3 logits shape", s3i(pred_logits=t(2, 3, 1)), ValueError, "`outputs.pred_logits` must have shape (B, Q)."),
    ("sam3 boxes shape", s3i(pred_boxes=t(2, 3, 5)), ValueError, "`outputs.pred_boxes` must have shape (B, Q, 4)."),
    ("sam3 masks shape", s3i(pred_masks=t(2, 3, 4)), ValueError, "`outputs.pred_masks` must have shape (B, Q, H, W)."),
    (
        "sam3 masks empty",
        s3i(pred_masks=t(2, 3, 0, 4)),
        ValueError,
        "`outputs.pred_masks` spatial dimensions must be non-empty.",
    ),
    (
        "sam3 mismatch",
        s3i(pred_boxes=t(2, 2, 4)),
        ValueError,
        "SAM3 instance logits, boxes, and masks must have matching batch and query dimensions.",
    ),
    (
        "sam3 device",
        s3i(pred_masks=t(2, 3, 4, 4, device="meta")),
        ValueError,
        "SAM3 instance logits, boxes, and masks must be on the same device.",
    ),
    (
        "sam3 presence shape",
        s3i(presence_logits=t(2, 2)),
        ValueError,
        "`outputs.presence_logits` must have shape (B, 1).",
    ),
    (
        "sam3 presence device",
        s3i(presence_logits=t(2, 1, device="meta")),
        ValueError,
        "`outputs.presence_logits` and other SAM3 instance outputs must be on the same device.",
    ),
    (
        "sam3 logits nan",
        s3i(pred_logits=t(2, 3, fill=float("nan"))),
        ValueError,
        "`outputs.pred_logits` must contain only finite values.",
    ),
    (
        "sam3 boxes inf",
        s3i(pred_boxes=t(2, 3, 4, fill=float("inf"))),
        ValueError,
        "`outputs.pred_boxes` must contain only finite values.",
    ),
    (
        "sam3 presence nan",
        s3i(presence_logits=t(2, 1, fill=float("nan"))),
        ValueError,
        "`outputs.presence_logits` must contain only finite values.",
    ),
    (
        "sam3 target sizes count",
        lambda: rsam.Sam3().restore_instance_mask_probs(S3, target_sizes=[(4, 4)]),
        ValueError,
        "`target_sizes` must match the batch size.",
    ),
    (
        "semantic missing",
        s3s(None),
        ValueError,
        "`outputs.semantic_seg` is required for SAM3 semantic mask restoration.",
    ),
    ("semantic not tensor", s3s([[0.5]]), TypeError, "`outputs.semantic_seg` must be a torch.Tensor."),
    ("semantic shape", s3s(t(2, 2, 4, 4)), ValueError, "`outputs.semantic_seg` must have shape (B, 1, H, W)."),
    ("semantic empty", s3s(t(2, 1, 4, 0)), ValueError, "`outputs.semantic_seg` spatial dimensions must be non-empty."),
    (
        "semantic dtype",
        s3s(t(2, 1, 4, 4, dtype=torch.int64)),
        TypeError,
        "`outputs.semantic_seg` must have a real floating-point dtype.",
    ),
    (
        "semantic meta",
        s3s(t(2, 1, 4, 4, device="meta")),
        ValueError,
        "`outputs.semantic_seg` must contain materialized, finite values.",
    ),
    (
        "semantic nan",
        s3s(t(2, 1, 4, 4, fill=float("nan"))),
        ValueError,
        "`outputs.semantic_seg` must contain only finite values.",
    ),
    (
        "semantic original sizes",
        s3s(t(2, 1, 4, 4), original_sizes=[(4, 4), (4.5, 4)]),
        TypeError,
        "Each `original_sizes` height and width must be an integer.",
    ),
    (
        "sam rankseg_kwargs not a dict",
        lambda: rsam.Sam3(rankseg_kwargs="iou").postprocess_semantic(S3),
        ValueError,
        "`rankseg_kwargs` must be a dictionary.",
    ),
    (
        "sam output_mode type",
        lambda: rsam.Sam2(rankseg_kwargs={"output_mode": None}).postprocess(S2, original_sizes=(4, 4)),
        TypeError,
        "SAM adapters require `output_mode` to be the string 'multilabel'.",
    ),
    (
        "sam output_mode value",
        lambda: rsam.Sam3(rankseg_kwargs={"output_mode": "multiclass"}).postprocess_instance(S3),
        ValueError,
        SAM_MODE,
    ),
    (
        "sam rankseg refuses",
        lambda: rsam.Sam1(rankseg_kwargs={"metric": "f1"}).postprocess(
            S1, original_sizes=(4, 4), reshaped_input_sizes=(4, 4)
        ),
        ValueError,
        "Unknown metric: f1",
    ),
]


@pytest.mark.parametrize(("call", "exc_type", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_message(call, exc_type, message):
    with pytest.raises(exc_type) as info:
        call()
    assert type(info.value) is exc_type
    assert str(info.value) == message


def test_every_message_of_the_modules_is_exercised():
    """Each message literal in the two modules' sources (f-string templates with their fields as wildcards) is
    produced by at least one case above."""
    import re

    produced = [c[3] for c in CASES]
    from rankseg.integration import _common

    sources = "".join(inspect.getsource(m) for m in (rt, rsam, _common, rsam.__dict__["check_real"]))
    templates = set()
    for literal in re.findall(r'raise \w+\(\s*((?:f?"[^"]*"\s*)+)', sources):
        parts = re.findall(r'f?"([^"]*)"', literal)
        templates.add("".join(parts))
    templates |= {TS, SAM_FAMILY, EOMT, SAM_MODE, _common.TUPLE_OUTPUTS_MESSAGE,
                  "`{name}` must be one (height, width) pair or one pair per batch item."}  # fmt: skip
    assert len(templates) > 45
    missing = []
    for template in sorted(templates):
        if not template or template.startswith("{") and template.endswith("}"):
            continue
        pattern = "^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template)) + "$"
        if not any(re.match(pattern, msg) for msg in produced):
            missing.append(template)
    assert not missing, missing


def test_signatures_are_keyword_only_like_0_0_8():
    sig = inspect.signature
    for fn, names in [(rt.restore_semantic_probs, ["outputs", "model", "target_sizes"]),
                      (rt.postprocess, ["outputs", "model", "target_sizes", "rankseg_kwargs"])]:  # fmt: skip
        parameters = list(sig(fn).parameters.values())
        assert [p.name for p in parameters] == names
        assert parameters[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in parameters[1:])
    for cls, params in [(rsam.Sam1, ["rankseg_kwargs", "pad_size"]),
                        (rsam.Sam2, ["rankseg_kwargs", "apply_non_overlapping_constraints"]),
                        (rsam.Sam3, ["rankseg_kwargs", "threshold"])]:  # fmt: skip
        parameters = list(sig(cls).parameters.values())
        assert [p.name for p in parameters] == params
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    with pytest.raises(TypeError):
        rsam.Sam1().restore_mask_probs(S1, (4, 4), (4, 4))  # sizes are keyword-only
    with pytest.raises(TypeError):
        rsam.Sam1().restore_mask_probs(S1, original_sizes=(4, 4))  # and required
