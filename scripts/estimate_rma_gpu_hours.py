"""Estimated GPU-hours of every run behind the RankSEG-RMA tables (an estimate, not a measurement).

    python scripts/estimate_rma_gpu_hours.py                      # results/rma_gpu_hours.md and .csv
    python scripts/estimate_rma_gpu_hours.py --tflops 150 --out /tmp/hours

For each entry of ``rma.rows`` in ``configs/tables.yaml`` that has a command, the script composes the run's train
config (``experiment=...`` plus the row's overrides), builds the network on PyTorch's ``meta`` device (no weights,
no compute) and counts the FLOPs of one forward pass at the training crop (``torch.utils.flop_counter``, 2 per
multiply-add). Then:

* training = 3 x forward FLOPs (forward + backward) x batch x iterations (``optimizer.total_iters``, or epochs x
  train images / batch for the epoch schedules, with the train-set sizes below);
* evaluation = forward FLOPs of one window x windows per val image (``inference.window``/``stride`` on the typical
  image size below) x val images;
* hours = FLOPs / an assumed sustained throughput ``--tflops`` per GPU (default 30 TFLOP/s, about 3% of an H100's
  dense FP16 peak: segmentation training at high resolution is bound by memory traffic (normalisation,
  upsampling, attention at stride 4) and data loading far more than by matrix products, so its FLOP utilisation
  is low). That figure is a guess, not a measurement: no GPU was available to this project. Time ~100 iterations
  of one row on the GPU you have (``python train.py experiment=... max_iters=100``), divide its FLOPs per
  iteration by the seconds per iteration, and rerun with that ``--tflops``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Data sizes the configs do not hold (assumptions, per dataset as the published CSV names it):
# (train images, val images, typical val image (height, width)).
DATA = {
    "ade20k": (20210, 2000, (512, 683)),  # ADEChallengeData2016; val images resized by shorter side ~512
    "cityscapes": (2975, 500, (1024, 2048)),
    "voc2012": (10582, 1449, (375, 500)),  # train_aug (SBD)
    "lits": (5752, 1438, (512, 512)),  # 7190 tumour slices (configs/dataset/lits.yaml), 4/5 train
    "kits": (4570, 1142, (512, 512)),  # 5712 tumour slices (configs/dataset/kits.yaml), 4/5 train
}


def forward_gflops(model_cfg, height: int, width: int) -> float:
    """GFLOPs of one forward pass of the network of ``model_cfg`` on one image, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from rankseg.engine.build import build_model

    net = build_model(model_cfg, pretrained=False).eval().to("meta")
    x = torch.empty(1, int(model_cfg.get("in_channels", 3)), height, width, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return counter.get_total_flops() / 1e9


def estimate(tflops: float) -> list[dict]:
    """One record per row with a command: FLOPs and estimated GPU-hours of training and evaluation."""
    from hydra import compose, initialize_config_dir

    from rankseg.engine.inference import inference_settings, window_starts
    from rankseg.experiments.tables import load_rma_config

    rma = load_rma_config(ROOT / "configs")
    records = []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for row in rma.rows:
            if row.experiment is None:
                continue
            cfg = compose("evaluate", [f"experiment={row.experiment}", *row.overrides])
            train_images, val_images, (img_h, img_w) = DATA[row.dataset]
            crop = int(cfg.dataset.train_crop_size)
            batch = int(cfg.batch_size)
            iters = cfg.optimizer.get("total_iters") or int(cfg.epochs) * (train_images // batch)
            train_gf = forward_gflops(cfg.model, crop, crop)
            view = inference_settings(cfg.get("inference"))
            if str(cfg.dataset.get("eval_geometry", "crop")) == "crop":  # shorter side -> crop, centre crop
                img_h = img_w = int(cfg.dataset.crop_size)
            win_h, win_w, windows = img_h, img_w, 1
            if view.mode == "slide":  # smaller images are padded to the window
                win_h, win_w = view.window
                rows = window_starts(max(img_h, win_h), win_h, view.stride[0])
                windows = len(rows) * len(window_starts(max(img_w, win_w), win_w, view.stride[1]))
            eval_gf = forward_gflops(cfg.model, win_h, win_w) * windows * val_images
            train_flops = 3 * train_gf * 1e9 * batch * int(iters)
            records.append(
                {
                    "dataset": row.dataset,
                    "model": row.model,
                    "encoder": row.encoder,
                    "command": row.commands()[0],
                    "iterations": int(iters),
                    "batch x crop": f"{batch} x {crop}x{crop}",
                    "forward GFLOPs/crop": train_gf,
                    "train PFLOPs": train_flops / 1e15,
                    "eval PFLOPs": eval_gf / 1e6,
                    "train GPU-h": train_flops / (tflops * 1e12) / 3600,
                    "eval GPU-h": eval_gf * 1e9 / (tflops * 1e12) / 3600,
                }
            )
    return records


def render(records: list[dict], tflops: float) -> str:
    total = sum(r["train GPU-h"] + r["eval GPU-h"] for r in records)
    lines = [
        "# Estimated GPU-hours of the RankSEG-RMA runs (estimates, not measurements)",
        "",
        "Generated by `python scripts/estimate_rma_gpu_hours.py`; do not edit. FLOPs counted on the meta device, "
        f"hours at an assumed sustained {tflops:g} TFLOP/s per GPU (a guess for an H100 with AMP; see the script); "
        "data sizes are the script's assumptions (`DATA`). One seed per row.",
        "",
        "| dataset | model | encoder | iterations | batch x crop | fwd GFLOPs | train PFLOPs | eval PFLOPs "
        "| train GPU-h | eval GPU-h |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['encoder']} | {r['iterations']} | {r['batch x crop']} "
            f"| {r['forward GFLOPs/crop']:.0f} | {r['train PFLOPs']:.0f} | {r['eval PFLOPs']:.1f} "
            f"| {r['train GPU-h']:.1f} | {r['eval GPU-h']:.2f} |"
        )
    lines += ["", f"Total: {math.ceil(total)} GPU-hours (estimate) for one seed of every row with a command.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=30.0, help="assumed sustained TFLOP/s per GPU")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="folder for rma_gpu_hours.md/.csv")
    args = parser.parse_args(argv)
    import pandas as pd

    from rankseg.experiments._io import atomic_write, atomic_write_text

    records = estimate(args.tflops)
    frame = pd.DataFrame(records)
    atomic_write(args.out / "rma_gpu_hours.csv", lambda p: frame.to_csv(p, index=False, float_format="%.4f"))
    text = render(records, args.tflops)
    atomic_write_text(args.out / "rma_gpu_hours.md", text)
    print(text)


if __name__ == "__main__":
    main()
