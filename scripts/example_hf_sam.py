"""RankSEG on a Hugging Face SegFormer and on SAM through ``rankseg.integration`` (0.0.8's adapters).

    python scripts/example_hf_sam.py                                   # Hub models, from the local HF cache
    python scripts/example_hf_sam.py --segformer DIR --sam DIR         # any folders saved with save_pretrained

Runs both models on two random images and prints the shapes and dtypes of the restored probabilities and of the
RankSEG predictions. Nothing is downloaded when ``HF_HUB_OFFLINE=1`` (as `make` sets); a model missing from the
cache then fails with transformers' own message.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segformer", default="nvidia/segformer-b0-finetuned-ade-512-512")
    ap.add_argument("--sam", default="facebook/sam-vit-base")
    args = ap.parse_args(argv)
    from transformers import AutoImageProcessor, SamModel, SamProcessor, SegformerForSemanticSegmentation

    from rankseg.integration import sam as rsam
    from rankseg.integration import transformers as rt

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), rng.integers(0, 256, (180, 200, 3), dtype=np.uint8)]

    # SegFormer (any output with dense `logits`; MaskFormer/Mask2Former/DETR outputs go the same way)
    processor = AutoImageProcessor.from_pretrained(args.segformer)
    model = SegformerForSemanticSegmentation.from_pretrained(args.segformer).eval()
    with torch.no_grad():
        outputs = model(**processor(images=images, return_tensors="pt"))
    sizes = [img.shape[:2] for img in images]  # (height, width) of each original image
    probs = rt.restore_semantic_probs(outputs, target_sizes=sizes)  # [(C, H, W)] softmax at the original sizes
    labels = rt.postprocess(outputs, target_sizes=sizes)  # [(H, W)] int64, Dice-optimal label maps
    rt.postprocess(outputs, target_sizes=sizes, rankseg_kwargs={"metric": "iou"})  # IoU-optimal
    print("segformer:", [tuple(p.shape) for p in probs], [(tuple(x.shape), x.dtype) for x in labels])

    # SAM (rsam.Sam2 / rsam.Sam3 for SAM2 / SAM3 outputs)
    processor = SamProcessor.from_pretrained(args.sam)
    model = SamModel.from_pretrained(args.sam).eval()
    inputs = processor(images=images[0], input_points=[[[160, 120]]], return_tensors="pt")
    with torch.no_grad():
        outputs = model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"])
    pad = processor.image_processor.pad_size  # a SizeDict; Sam1 takes (h, w) or a dict
    adapter = rsam.Sam1(pad_size=(pad.height, pad.width))
    sizes = dict(original_sizes=inputs["original_sizes"], reshaped_input_sizes=inputs["reshaped_input_sizes"])
    mask_probs = adapter.restore_mask_probs(outputs, **sizes)  # [(1, 3, H, W)] sigmoid probabilities
    masks = adapter.postprocess(outputs, **sizes)  # [(1, 3, H, W)] bool, one RankSEG mask per predicted mask
    print("sam:", [tuple(p.shape) for p in mask_probs], [(tuple(m.shape), m.dtype) for m in masks])


if __name__ == "__main__":
    main()
