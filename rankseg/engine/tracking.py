"""Evaluation results in the experiment tracker (Weights & Biases; offline by default, see configs/logger/).

One tracker run per evaluation, named after the network's run and grouped with it (``group`` = the run key),
with ``job_type="evaluate"``. It holds:

* the summary (also as ``files/evaluation_summary.json``): ``{rule}/mdice``, ``{rule}/miou``,
  ``{rule}/dataset_dice``, ``{rule}/dataset_iou`` per rule and the ECE of each probability set
  (``calibration/{raw,@T}/ece``);
* ``class_scores``: a table (rule, class, Dice, IoU, dataset Dice, dataset IoU);
* the pictures this evaluation wrote next to ``metrics.json``: ``reliability.png``, ``plots/*.png`` and
  ``overlays/*.png``.

``logger=none`` or ``WANDB_MODE=disabled`` turns it off; ``logger.mode=online`` uploads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

__all__ = ["log_evaluation", "tracker_enabled"]

_PICTURES = ("reliability.png", "plots/*.png", "overlays/*.png")
SUMMARY_FILE = "evaluation_summary.json"


def tracker_enabled(cfg: DictConfig) -> bool:
    """Whether ``cfg.logger`` asks for a tracker (and the environment does not turn it off)."""
    logger_cfg = cfg.get("logger")
    return not (
        logger_cfg is None or logger_cfg.get("name") == "none" or os.environ.get("WANDB_MODE") == "disabled"
    )


def log_evaluation(cfg: DictConfig, merged: dict[str, Any], out_dir: Path, rules: list[str]) -> Path | None:
    """Log one evaluation (the rules just evaluated, from the merged ``metrics.json`` content) to the tracker.

    Returns:
        The tracker's local run folder, or None when the tracker is off.
    """
    if not tracker_enabled(cfg):
        return None
    import wandb  # imported lazily: slow, and unused with logger=none

    logger_cfg = cfg.logger
    Path(logger_cfg.dir).mkdir(parents=True, exist_ok=True)
    key = "/".join(str(merged.get(k)) for k in ("dataset", "model", "loss", "run"))
    config = {k: merged.get(k) for k in ("dataset", "model", "loss", "run", "checkpoint", "weights_sha256", "commit")}
    config["eval_settings"] = merged.get("eval_settings")
    run = wandb.init(
        project=logger_cfg.project,
        entity=logger_cfg.get("entity"),
        mode=logger_cfg.get("mode", "offline"),
        dir=str(logger_cfg.dir),
        name=f"evaluate {key}",
        group=key,
        job_type="evaluate",
        tags=list(logger_cfg.get("tags") or []),
        config=config,
    )
    try:
        records = merged.get("rules", {})
        summary: dict[str, Any] = {}
        rows = []
        for rule in rules:
            record = records.get(rule)
            if record is None:
                continue
            for metric in ("mdice", "miou", "dataset_dice", "dataset_iou"):
                summary[f"{rule}/{metric}"] = record.get(metric)
            for cls, dice in record["class_dice"].items():
                rows.append([rule, cls, dice, record["class_iou"][cls], record["class_dataset_dice"][cls],
                             record["class_dataset_iou"][cls]])  # fmt: skip
        for name, entry in (merged.get("calibration") or {}).items():
            if isinstance(entry, dict) and "ece" in entry:
                summary[f"calibration/{name}/ece"] = entry["ece"]
                summary[f"calibration/{name}/ece_per_image"] = entry.get("ece_per_image")
        columns = ["rule", "class", "dice", "iou", "dataset_dice", "dataset_iou"]
        payload: dict[str, Any] = {"class_scores": wandb.Table(columns=columns, data=rows)}
        for pattern in _PICTURES:
            for path in sorted(out_dir.glob(pattern)):
                payload[f"{path.parent.name}/{path.stem}" if path.parent != out_dir else path.stem] = wandb.Image(
                    str(path)
                )
        run.log(payload)
        summary = {k: v for k, v in summary.items() if v is not None}
        run.summary.update(summary)
        # also as a plain file of the run (synced with it), readable without wandb's binary log
        (Path(run.dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, sort_keys=True))
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder
