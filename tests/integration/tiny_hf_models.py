"""Tiny Hugging Face Transformers segmentation models with random weights, built offline from small configs.

Used by the integration tests (real client objects through the adapters) and by
``scripts/parity/record_integration.py`` (their outputs are recorded with rankseg 0.0.8's results). Every builder
is seeded, so the weights, the inputs and therefore the outputs are the same on every call in one torch build.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _hf():
    """The ``transformers`` package, with the install hint when it is missing."""
    try:
        import transformers
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "these tiny models need Hugging Face Transformers: pip install transformers (or `make setup`, which "
            "installs the project's `integrations` extra)"
        ) from exc
    return transformers


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def _lively(model: Any, seed: int) -> Any:
    """Variance-preserving random weights (std 1/sqrt(fan_in) for every weight matrix and kernel).

    Hugging Face's initialisation makes the heads of an untrained model output logits of about 1e-4, i.e.
    probabilities of 0.5 or 1/C everywhere; with these weights the outputs vary on a unit scale instead, so the
    adapters and RankSEG see non-trivial maps. Embeddings and norms keep their initialisation.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2 and "embed" not in name and "norm" not in name:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)
    return model.eval()


def images(batch: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Synthetic-looking inputs: smooth random blobs plus noise, roughly normalised.

    Shape:
        - (batch, 3, *size), float32.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, max(size[0] // 8, 2), max(size[1] // 8, 2), generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return smooth + 0.1 * torch.randn(batch, 3, *size, generator=gen)


@functools.cache
def segformer():
    T = _hf()

    _seeded(0)
    cfg = T.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=3,
    )  # fmt: skip
    return _lively(T.SegformerForSemanticSegmentation(cfg), 0)


@functools.cache
def upernet():
    T = _hf()

    _seeded(1)
    backbone = T.ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    cfg = T.UperNetConfig(
        backbone_config=backbone, hidden_size=16, auxiliary_in_channels=24, auxiliary_channels=8, num_labels=4
    )
    return _lively(T.UperNetForSemanticSegmentation(cfg), 1)


@functools.cache
def mask2former():
    T = _hf()

    _seeded(2)
    swin = T.SwinConfig(
        image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    cfg = T.Mask2FormerConfig(
        backbone_config=swin, num_labels=3, hidden_dim=32, mask_feature_size=32, feature_size=32, num_queries=5,
        encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=32, dim_feedforward=32, num_attention_heads=2,
        common_stride=4,
    )  # fmt: skip
    return _lively(T.Mask2FormerForUniversalSegmentation(cfg), 2)


@functools.cache
def sam():
    T = _hf()

    _seeded(3)
    vision = T.SamVisionConfig(
        hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
        window_size=2, global_attn_indexes=[1], num_pos_feats=16, mlp_dim=64, initializer_range=0.02,
    )  # fmt: skip
    prompt = T.SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = T.SamMaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
    )
    cfg = T.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    return _lively(T.SamModel(cfg), 3)


@functools.cache
def sam2():
    T = _hf()

    _seeded(4)
    hiera = T.Sam2HieraDetConfig(
        hidden_size=8, image_size=[64, 64], blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 2, 2], global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )  # fmt: skip
    vision = T.Sam2VisionConfig(
        backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],
        fpn_hidden_size=32,
    )  # fmt: skip
    prompt = T.Sam2PromptEncoderConfig(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = T.Sam2MaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
    )
    cfg = T.Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    return _lively(T.Sam2Model(cfg), 4)


@functools.cache
def sam3():
    T = _hf()

    _seeded(5)
    vit = T.Sam3ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14,
        window_size=2, global_attn_indexes=[1], pretrain_image_size=56,
    )  # fmt: skip
    vision = T.Sam3VisionConfig(
        backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]]
    )
    text = T.CLIPTextConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=8, bos_token_id=98, eos_token_id=99, pad_token_id=0,
    )  # fmt: skip
    small = dict(hidden_size=32, num_attention_heads=2)
    cfg = T.Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=T.Sam3GeometryEncoderConfig(num_layers=1, intermediate_size=64, **small),
        detr_encoder_config=T.Sam3DETREncoderConfig(num_layers=1, intermediate_size=64, **small),
        detr_decoder_config=T.Sam3DETRDecoderConfig(num_layers=1, num_queries=6, intermediate_size=64, **small),
        mask_decoder_config=T.Sam3MaskDecoderConfig(**small),
    )
    return _lively(T.Sam3Model(cfg), 5)


# ------------------------------------------------------------------------------------------------ forward passes
@torch.no_grad()
def segformer_outputs() -> Any:
    """SegFormer logits at 1/4 resolution: (2, 3, 8, 8) for two 32 x 32 images."""
    return segformer()(pixel_values=images(2, (32, 32), 10))


@torch.no_grad()
def upernet_outputs() -> Any:
    """UPerNet (ConvNeXt) logits at input resolution: (1, 4, 32, 32)."""
    return upernet()(pixel_values=images(1, (32, 32), 11))


@torch.no_grad()
def mask2former_outputs() -> Any:
    """Mask2Former: class_queries_logits (2, 5, 4), masks_queries_logits (2, 5, 16, 16)."""
    return mask2former()(pixel_values=images(2, (64, 64), 12))


def sam_processor():
    return _hf().SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})


@torch.no_grad()
def sam_outputs() -> tuple[Any, dict[str, torch.Tensor]]:
    """SAM on two images of 24 x 20 and 15 x 32 with one point each: pred_masks (2, 1, 3, 16, 16), and the
    processor's ``original_sizes`` / ``reshaped_input_sizes`` ((64, 53) and (30, 64))."""
    processor = sam_processor()
    raw = [(images(1, (24, 20), 13)[0].clamp(-1, 1) + 1) * 127.5, (images(1, (15, 32), 14)[0].clamp(-1, 1) + 1) * 127.5]
    inputs = processor(images=[r.to(torch.uint8) for r in raw], return_tensors="pt")
    points = torch.tensor([[[[20.0, 24.0]]], [[[40.0, 10.0]]]])
    out = sam()(pixel_values=inputs["pixel_values"], input_points=points)
    return out, {"original_sizes": inputs["original_sizes"], "reshaped_input_sizes": inputs["reshaped_input_sizes"]}


@torch.no_grad()
def sam2_outputs() -> Any:
    """SAM2 with two objects (one point each) per image: pred_masks (2, 2, 1, 16, 16)."""
    points = torch.tensor([[[[10.0, 20.0]], [[50.0, 5.0]]], [[[30.0, 40.0]], [[1.0, 2.0]]]])
    labels = torch.ones(2, 2, 1, dtype=torch.long)
    return sam2()(
        pixel_values=images(2, (64, 64), 15), input_points=points, input_labels=labels, multimask_output=False
    )


@torch.no_grad()
def sam3_outputs() -> Any:
    """SAM3 with a text prompt: pred_logits (2, 6), pred_boxes (2, 6, 4), pred_masks (2, 6, 16, 16),
    presence_logits (2, 1), semantic_seg (2, 1, 16, 16)."""
    gen = torch.Generator().manual_seed(16)
    ids = torch.randint(1, 98, (2, 4), generator=gen)
    return sam3()(
        pixel_values=images(2, (56, 56), 17), input_ids=ids, attention_mask=torch.ones(2, 4, dtype=torch.long)
    )
