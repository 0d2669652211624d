"""Time one training step (forward, loss, backward, SGD step) of each model config, to size short runs.

    python scripts/bench_train.py                       # prints the table
    make bench-train                                    # writes results/train_cost_cpu.md

Setups: the three models of ``configs/model`` as ``python train.py model=...`` builds them (DeepLabV3+ with a
ResNet-101 encoder, PSPNet with ResNet-50, FCN-8s with VGG16) and the CPU-sized variants of
``experiment=synthetic_table`` (``configs/experiment/light_model``), each at the synthetic dataset's training
geometry (64x64 crops, the config's batch: 16 images, FCN-8s light 4) with the cross-entropy loss and the SGD
setup of training. Weights are random (``encoder_weights=None``; the cost does not depend on them). Each
figure is the median of ``--repeats`` steps after one warm-up step; the last column is the time of a full
default ``python train.py`` schedule on the synthetic data (8 epochs of 400 images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rankseg.experiments.machine import describe_machine, median_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
# name: train overrides
SETUPS = {
    "DeepLabV3+ ResNet-101 (model=deeplabv3plus)": ["model=deeplabv3plus"],
    "PSPNet ResNet-50 (model=pspnet)": ["model=pspnet"],
    "FCN-8s VGG16 (model=fcn8)": ["model=fcn8"],
    "DeepLabV3+ MobileNetV2, light": ["experiment=synthetic_table", "experiment/light_model@light_model=deeplabv3plus"],
    "PSPNet ResNet-18, light": ["experiment=synthetic_table", "experiment/light_model@light_model=pspnet"],
    "FCN-8s VGG11-BN, light": ["experiment=synthetic_table", "experiment/light_model@light_model=fcn8"],
}


def bench_setup(overrides: list[str], device: torch.device, repeats: int) -> tuple[float, int, int, int]:
    """(median seconds per step, batch, crop side, steps of the default schedule)."""
    from hydra import compose, initialize_config_dir

    from rankseg.engine.build import build_loss, build_model, param_groups
    from rankseg.engine.train import model_logits

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", [*overrides, "dataset=synthetic", "dataset.encoder_weights=null"])
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device).train()
    loss_fn = build_loss(cfg.loss).to(device)
    opt = cfg.optimizer
    groups = param_groups(model, list(cfg.model.get("backbone_prefixes", [])), opt.lr, opt.backbone_lr_mult)
    optimizer = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    batch, side = int(cfg.batch_size), int(cfg.dataset.train_crop_size)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, side, side, generator=gen).to(device)
    labels = torch.randint(0, int(cfg.dataset.num_classes), (batch, side, side), generator=gen).to(device)

    def step() -> None:
        loss = loss_fn(model_logits(model(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    steps = int(cfg.dataset.epochs) * (int(cfg.dataset.num_train) // batch)
    return median_seconds(step, device, repeats), batch, side, steps


def render(rows: dict[str, tuple[float, int, int, int]], device: torch.device, repeats: int) -> str:
    lines = [
        "# Training cost per step",
        "",
        f"Machine: {describe_machine(device)}. Device: {device}. Median of {repeats} steps after one warm-up.",
        f"Command: `python scripts/bench_train.py --device {device.type} --repeats {repeats}` (random weights, "
        "synthetic geometry, cross-entropy, SGD).",
        "",
        "| model | batch x crop | s / step | images / s | default synthetic schedule |",
        "|---|---|---:|---:|---:|",
    ]
    for name, (sec, batch, side, steps) in rows.items():
        total = steps * sec
        duration = f"{total / 60:.0f} min" if total >= 60 else f"{total:.0f} s"
        cells = [name, f"{batch} x {side}x{side}", f"{sec:.2f}", f"{batch / sec:.1f}", f"{steps} steps, {duration}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here (atomically)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = {}
    for name, overrides in SETUPS.items():
        rows[name] = bench_setup(overrides, device, args.repeats)
        sec, batch, side, steps = rows[name]
        print(f"{name}: {sec:.2f} s per step of {batch} x {side}x{side}", flush=True)
    text = render(rows, device, args.repeats)
    print(text)
    if args.out:
        from rankseg.engine.runfiles import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
