"""Time the network forward pass and every prediction rule's scoring side by side, at the evaluation geometry
of the paper's protocols, to see what each rule adds to an evaluation.

    python scripts/bench_evaluate.py --device cuda --out results/evaluate_benchmark_cuda.md
    python scripts/bench_evaluate.py --device cpu --small --out results/evaluate_benchmark_cpu.md

Setups: PSPNet-R50 at the VOC protocol (batch 8, 480x480, 21 classes) and DeepLabV3+-R101 at the Cityscapes
protocol (batch 6, 512x512 crops, 19 classes); ``--small`` uses batch 2 at 256x256 (CPU). Networks come from
``configs/model`` with random weights (``encoder_weights=None``); the forward runs as in evaluation (no grad,
float16 autocast on CUDA). A random network outputs near-uniform probabilities, which the RankSEG rules prune
away in no time, so the rules are timed on the same output shape filled with softmax of smooth random logits
(noise on a 16x coarser grid, upsampled, scaled by 4: coherent objects, confident to uncertain pixels).
Rules: ``configs/predict`` threshold, argmax, rankdice (BA, multilabel), rma (RMA Dice, multiclass), exact
(exact Dice, multilabel). Figures are medians of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from rankseg.experiments.machine import describe_machine, median_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES = ["threshold", "argmax", "rankdice", "rma", "exact"]
# name: (model config, dataset config, batch, crop side, classes)
SETUPS = {
    "PSPNet-R50, VOC (480x480)": ("pspnet", "voc2012", 8, 480, 21),
    "DeepLabV3+-R101, Cityscapes (512x512 crop)": ("deeplabv3plus", "cityscapes", 6, 512, 19),
}
SMALL = (2, 256)


def smooth_probs(shape: tuple[int, ...], device: torch.device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    coarse = torch.randn(b, c, max(h // 16, 1), max(w // 16, 1), generator=gen)
    logits = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * 4
    return logits.softmax(1).to(device)


def bench_setup(
    model_name: str, dataset: str, batch: int, side: int, classes: int, device: torch.device, repeats: int
) -> dict[str, float]:
    from hydra import compose, initialize_config_dir

    from rankseg.engine.build import build_model, build_rules
    from rankseg.engine.train import model_logits

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("evaluate", [f"model={model_name}", f"dataset={dataset}", f"predict=[{','.join(RULES)}]"])
    assert int(cfg.dataset.num_classes) == classes
    model = build_model(cfg.model, pretrained=False).to(device).eval()
    rules = build_rules(cfg.predict)
    images = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1)).to(device)

    @torch.no_grad()
    def forward() -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            return model_logits(model(images))

    times = {"forward": median_seconds(forward, device, repeats)}
    out_shape = tuple(forward().shape)
    assert out_shape == (batch, classes, side, side), out_shape
    probs = smooth_probs(out_shape, device)
    for name, rule in rules.items():
        times[name] = median_seconds(lambda rule=rule: rule(probs), device, repeats)
    return times


def render(results: dict[str, dict[str, float]], device: torch.device, small: bool, repeats: int) -> str:
    lines = [
        "# Evaluation cost: forward pass vs. prediction rules",
        "",
        f"Machine: {describe_machine(device)}. Device: {device}. Median of {repeats} runs after one warm-up.",
        f"Command: `python scripts/bench_evaluate.py --device {device.type}{' --small' if small else ''}"
        f" --repeats {repeats}`.",
    ]
    if small:
        lines.append(f"`--small`: batch {SMALL[0]} at {SMALL[1]}x{SMALL[1]} instead of the protocol geometry.")
    for setup, times in results.items():
        lines += ["", f"## {setup}", "", "| step | median (ms) | / forward |", "|---|---:|---:|"]
        for name, sec in times.items():
            lines.append(f"| {name} | {1000 * sec:.1f} | {sec / times['forward']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help=f"batch {SMALL[0]} at {SMALL[1]}x{SMALL[1]}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here (atomically)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {}
    for setup, (model_name, dataset, batch, side, classes) in SETUPS.items():
        if args.small:
            batch, side = SMALL
        print(f"{setup}: batch {batch}, {side}x{side}, {classes} classes", flush=True)
        results[setup] = bench_setup(model_name, dataset, batch, side, classes, device, args.repeats)
        for name, sec in results[setup].items():
            print(f"  {name:>10}: {1000 * sec:9.1f} ms  ({sec / results[setup]['forward']:.2f} x forward)")
    text = render(results, device, args.small, args.repeats)
    if args.out:
        from rankseg.engine.runfiles import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
