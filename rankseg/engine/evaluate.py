"""Evaluation (paper §2): one forward pass over the val split, several prediction rules, per-image and
dataset-level Dice/IoU, a printed report and ``metrics.json`` + ``class_scores.csv`` merged per rule.

Run through ``python evaluate.py ...`` (see ``configs/evaluate.yaml``) or call :func:`run_evaluation`.
``torchrun --nproc_per_node=N evaluate.py ...`` hands the single-process batches round-robin to N processes,
gathers the per-image counts (with the image indices, restoring the single-process order) and lets rank 0
aggregate and write, so ``metrics.json`` is identical to a single-process run's.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rankseg.engine.build import build_dataset, build_model, build_rules
from rankseg.engine.checkpoint import CheckpointNotFoundError, check_num_classes, load_checkpoint
from rankseg.engine.distributed import DistInfo, ShardedBatchSampler, broadcast_object, gather_rows, process_group
from rankseg.engine.runfiles import atomic_write_json, atomic_write_text, git_commit, nan_to_none
from rankseg.engine.train import model_logits
from rankseg.metrics import MetricAccumulator, aggregate, scores_from_stats
from rankseg.predict import probabilities

METRICS_FILE = "metrics.json"
CLASS_CSV = "class_scores.csv"


def train_command(cfg: DictConfig) -> str:
    """The ``python train.py ...`` command whose checkpoint this evaluation expects."""
    args = [f"dataset={cfg.dataset.name}", f"model={cfg.model.name}", f"loss={cfg.loss.name}"]
    default_dir = "checkpoints"
    if str(cfg.paths.checkpoint_dir) != default_dir:
        args.append(f"paths.checkpoint_dir={cfg.paths.checkpoint_dir}")
    return "python train.py " + " ".join(shlex.quote(a) for a in args)


def _loss_meta(ckpt_config: dict[str, Any], cfg: DictConfig) -> tuple[str, bool]:
    """(activation, proper) of the loss the checkpoint was trained with (falls back to ``cfg.loss``)."""
    loss = ckpt_config.get("loss") or OmegaConf.to_container(cfg.loss, resolve=True)
    return str(loss.get("activation", "softmax")), bool(loss.get("proper", False))


def _rule_record(
    scores: dict[str, Any],
    class_names: list[str],
    checkpoint: str,
    commit: str | None,
    reference_ignore: bool,
) -> dict[str, Any]:
    record: dict[str, Any] = {k: scores[k] for k in ("mdice", "miou", "dataset_dice", "dataset_iou")}
    for key in ("class_dice", "class_iou", "class_dataset_dice", "class_dataset_iou"):
        record[key] = dict(zip(class_names, scores[key], strict=True))
    record.update(
        num_images=scores["num_images"],
        reference_ignore=reference_ignore,
        checkpoint=checkpoint,
        commit=commit,
    )
    return record


def merge_metrics(path: Path, header: dict[str, Any], rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge this run's rules into ``path`` (other rules already there are kept) and write it atomically."""
    previous: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    merged = {**previous, **header, "rules": {**previous.get("rules", {}), **nan_to_none(rules)}}
    atomic_write_json(path, merged)
    return merged


def write_class_csv(path: Path, merged: dict[str, Any]) -> None:
    """One row per (rule, class), rendered from the merged ``metrics.json`` so the two always agree."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rule", "class", "dice", "iou", "dataset_dice", "dataset_iou"])
    for rule, rec in merged["rules"].items():
        for name in rec["class_dice"]:
            row = [rec["class_dice"][name], rec["class_iou"][name]]
            row += [rec.get("class_dataset_dice", {}).get(name), rec.get("class_dataset_iou", {}).get(name)]
            writer.writerow([rule, name] + ["" if v is None else f"{v:.6f}" for v in row])
    atomic_write_text(path, buf.getvalue())


def format_report(records: dict[str, dict[str, Any]], class_names: list[str], title: str) -> str:
    """A per-class Dice/IoU table with one column pair per rule, paper means and dataset-level means below."""
    rules = list(records)
    width = max([len(n) for n in class_names] + [14])

    def fmt(v: float | None) -> str:
        return "   nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"

    lines = [title, " " * width + "".join(f"  {r[:13]:>13}" for r in rules)]
    lines.append(" " * width + f"  {'Dice':>6} {'IoU':>6}" * len(rules))
    for name in class_names:
        cells = "".join(
            f"  {fmt(records[r]['class_dice'][name])} {fmt(records[r]['class_iou'][name])}" for r in rules
        )
        lines.append(f"{name:<{width}}{cells}")
    lines.append("-" * len(lines[-1]))
    for label, dk, ik in (
        ("mean (paper)", "mdice", "miou"),
        ("dataset-level", "dataset_dice", "dataset_iou"),
    ):
        cells = "".join(f"  {fmt(records[r][dk])} {fmt(records[r][ik])}" for r in rules)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def gather_counts(
    accumulators: dict[str, MetricAccumulator], indices: list[int], info: DistInfo, device: torch.device
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Every rank's per-image counts per rule, in dataset order (image ``indices`` travel with them).

    Shape:
        per rule: ``(tp, fp, fn)``, each (num_images, C) int64 on CPU.
    """
    names = list(accumulators)
    num_classes = next(iter(accumulators.values())).num_classes if names else 0
    parts = [torch.tensor(indices, dtype=torch.int64).view(-1, 1)]
    for name in names:
        parts += list(accumulators[name].counts())
    rows = torch.cat(parts, 1) if names else parts[0]
    rows = gather_rows(rows.to(device), info).cpu()
    rows = rows[rows[:, 0].argsort(stable=True)]
    out = {}
    for k, name in enumerate(names):
        block = rows[:, 1 + 3 * k * num_classes : 1 + 3 * (k + 1) * num_classes]
        out[name] = (block[:, :num_classes], block[:, num_classes : 2 * num_classes], block[:, 2 * num_classes :])
    return out


@torch.no_grad()
def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the checkpoint ``cfg.ckpt_path`` on ``cfg.dataset``'s val split with every rule in
    ``cfg.predict``, print the report and merge the scores into ``cfg.results_dir/metrics.json``.

    Under ``torchrun`` every rank runs this function; rank 0 prints and writes, all ranks return the result.

    Raises:
        CheckpointNotFoundError: no checkpoint (the message holds the train command that creates it).
        ClassCountMismatchError: the checkpoint's class count differs from the dataset's.
        rankseg.data.DatasetLayoutError: the dataset root is missing or malformed.

    Returns:
        The merged ``metrics.json`` content (NaN as None).
    """
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise CheckpointNotFoundError(
            f"no checkpoint at {ckpt_path}. Train it first with:\n    {train_command(cfg)}\n"
            f"or point to one with ckpt_path=..."
        )
    with process_group(str(cfg.device)) as (info, device):
        return _evaluate(cfg, ckpt_path, info, device)


def _evaluate(cfg: DictConfig, ckpt_path: Path, info: DistInfo, device: torch.device) -> dict[str, Any]:
    say = print if info.is_main else (lambda *args, **kwargs: None)
    state = load_checkpoint(ckpt_path, map_location="cpu")
    ckpt_config = state.get("config") or {}
    num_classes = int(cfg.dataset.num_classes)
    check_num_classes(ckpt_config["dataset"]["num_classes"], num_classes, ckpt_path, cfg.dataset.name)
    val_set = build_dataset(cfg.dataset, "val")

    # The network is rebuilt from the checkpoint's own model config, so that overrides used in training
    # (e.g. a lighter encoder) need not be repeated here; its weights all come from the checkpoint.
    model = build_model(ckpt_config.get("model") or cfg.model, pretrained=False)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    if ckpt_config.get("model", {}).get("name", cfg.model.name) != cfg.model.name:
        say(f"note: checkpoint holds model {ckpt_config['model']['name']!r}, config says {cfg.model.name!r}")
    activation, proper = _loss_meta(ckpt_config, cfg)

    rules = build_rules(cfg.predict)
    if not proper and not cfg.force_rankdice:
        skipped = [name for name, rule in rules.items() if rule.requires_proper]
        if skipped:
            say(
                f"skipping {', '.join(skipped)}: loss {cfg.loss.name!r} is not strictly proper, so its "
                "outputs are not calibrated probabilities (paper: '/'); force_rankdice=true runs them anyway"
            )
        rules = {name: rule for name, rule in rules.items() if not rule.requires_proper}
    coi = (
        OmegaConf.to_container(cfg.dataset.classes_of_interest)
        if cfg.dataset.get("classes_of_interest")
        else None
    )
    reference_ignore = bool(cfg.reference_ignore)
    ignore_index = int(cfg.dataset.ignore_index)
    accumulators = {
        name: MetricAccumulator(num_classes, coi, ignore_index, reference_ignore=reference_ignore)
        for name in rules
    }
    running = {name: [0.0, 0] for name in rules}  # sum and count of per-image mDice, for the progress bar
    coi_index = list(range(num_classes)) if coi is None or coi == "all" else list(coi)

    sampler = ShardedBatchSampler(len(val_set), int(cfg.batch_size), info.rank, info.world_size)
    loader = DataLoader(
        val_set,
        batch_sampler=sampler,
        num_workers=int(cfg.dataset.num_workers),
        pin_memory=device.type == "cuda",
    )
    use_amp = bool(cfg.amp) and device.type == "cuda"
    indices: list[int] = []  # dataset index of every counted image, in this rank's order
    bar = tqdm(
        loader, desc=f"evaluate {cfg.model.name}/{cfg.loss.name}", dynamic_ncols=True, disable=not info.is_main
    )
    for batch_indices, (images, targets) in zip(sampler.batches(), bar, strict=True):
        targets = targets.to(device, non_blocking=True)
        if bool((targets == ignore_index).all()):
            continue  # as the reference tester: a batch without labelled pixels is skipped
        indices += batch_indices
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model_logits(model(images.to(device, non_blocking=True)))
        probs = probabilities(logits, activation)
        for name, rule in rules.items():
            tp, fp, fn = accumulators[name].update(rule(probs), targets)
            dice = scores_from_stats(tp, fp, fn)[0][:, coi_index]
            per_image = torch.nanmean(dice, dim=1)
            ok = ~torch.isnan(per_image)
            running[name][0] += float(per_image[ok].sum())
            running[name][1] += int(ok.sum())
        bar.set_postfix({f"mDice[{n}]": f"{s / max(c, 1):.3f}" for n, (s, c) in running.items()})
    bar.close()
    counts = gather_counts(accumulators, indices, info, device)

    merged = None
    if info.is_main:
        merged = _report(cfg, ckpt_path, counts, coi, reference_ignore)
    return broadcast_object(merged, info)


def _report(
    cfg: DictConfig,
    ckpt_path: Path,
    counts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    coi: Any,
    reference_ignore: bool,
) -> dict[str, Any]:
    """Aggregate, print the table, merge into ``metrics.json`` and render ``class_scores.csv``."""
    class_names = [str(n) for n in cfg.dataset.class_names]
    commit = git_commit()
    records = {
        name: _rule_record(
            aggregate(*stats, classes_of_interest=coi), class_names, str(ckpt_path), commit, reference_ignore
        )
        for name, stats in counts.items()
    }
    title = (
        f"Results for model {cfg.model.name} + loss {cfg.loss.name} on {cfg.dataset.name} val "
        f"({records[next(iter(records))]['num_images'] if records else 0} images, x100; "
        f"checkpoint {ckpt_path})"
    )
    if records:
        print(format_report(records, class_names, title))
    out_dir = Path(cfg.results_dir)
    header = {
        "dataset": str(cfg.dataset.name),
        "model": str(cfg.model.name),
        "loss": str(cfg.loss.name),
        "checkpoint": str(ckpt_path),
        "commit": commit,
    }
    merged = merge_metrics(out_dir / METRICS_FILE, header, records)
    write_class_csv(out_dir / CLASS_CSV, merged)
    print(f"wrote {out_dir / METRICS_FILE} and {out_dir / CLASS_CSV}")
    return merged
