"""Evaluation (paper §2): one forward pass over the val split, several prediction rules, per-image and
dataset-level Dice/IoU, a printed report and ``metrics.json`` + ``class_scores.csv`` per run.

Run through ``python evaluate.py ...`` (see ``configs/evaluate.yaml``) or call :func:`run_evaluation`.

Which network: the run of the config (the same keys as in training, :mod:`rankseg.engine.runs`), or
``ckpt_path=`` (a run folder or its ``last.pt``), whose stored dataset, model and loss must agree with the
config's. The network is built from the project's own model config, never from anything stored in the file,
and gets every weight from the checkpoint. Where results go: the checkpoint's own config decides, as
``{paths.results_dir}/runs/{dataset}/{model}/{loss}/{run}/``.

Merging: every rule record carries the content hash of the weights and the evaluation settings that change
numbers (val split and geometry, ignore handling, classes of interest, AMP, activation; sliding windows or flip
when ``inference`` is not the default whole-image pass, :mod:`rankseg.engine.inference`). A rule evaluated later
joins the existing records only when both match; records that do not are dropped, with a message. The merge holds
an OS file lock and replaces the files atomically; a corrupt ``metrics.json`` is moved aside before the
evaluation starts.

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
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from rankseg.engine import calibration as calib
from rankseg.engine import console, tracking
from rankseg.engine.build import build_dataset, build_model, build_rules
from rankseg.engine.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    check_num_classes,
    check_same_run,
    load_checkpoint,
    read_checkpoint_file,
    stored_identity,
    weights_sha256,
)
from rankseg.engine.config_checks import ConfigError, check_evaluate_config
from rankseg.engine.distributed import DistInfo, ShardedBatchSampler, broadcast_object, gather_rows, process_group
from rankseg.engine.inference import infer, inference_settings
from rankseg.engine.inspection import Inspector, check_inspect_config
from rankseg.engine.reference_ckpt import (
    check_reference_fits,
    is_reference_checkpoint,
    load_reference_weights,
    read_reference_checkpoint,
    reference_identity,
)
from rankseg.engine.runfiles import atomic_write_json, atomic_write_text, file_lock, git_commit, nan_to_none
from rankseg.engine.runs import (
    CHECKPOINT_FILE,
    RUN_FILE,
    config_diff,
    describe_diff,
    run_identity,
    run_key,
    run_name,
)
from rankseg.engine.train import model_logits
from rankseg.metrics import MetricAccumulator, aggregate, check_target_values, scores_from_stats

METRICS_FILE = "metrics.json"
CLASS_CSV = "class_scores.csv"
_EVAL_HINT = "Point ckpt_path= at a checkpoint written by train.py, or drop ckpt_path= to evaluate this config's run"
_REFERENCE_HINT = (
    "Point ckpt_path= at a checkpoint-epoch*.pth of the published networks (README: Evaluate the published "
    "networks), with its config.json beside it"
)


def train_command(cfg: DictConfig) -> str:
    """The ``python train.py ...`` command (plus the caller's other overrides) whose run this evaluation expects."""
    args = [f"dataset={cfg.dataset.name}", f"model={cfg.model.name}", f"loss={cfg.loss.name}"]
    default_dir = "checkpoints"
    if str(cfg.paths.checkpoint_dir) != default_dir:
        args.append(f"paths.checkpoint_dir={cfg.paths.checkpoint_dir}")
    return "python train.py " + " ".join(shlex.quote(a) for a in args)


def _other_runs(cfg: DictConfig, identity: dict[str, Any]) -> list[str]:
    """One line per run folder next to the requested one (same dataset, model and loss) saying how it differs."""
    parent = (Path(cfg.paths.checkpoint_dir) / run_key(identity)).parent
    lines = []
    for run_file in sorted(parent.glob(f"*/{RUN_FILE}")):
        if not (run_file.parent / CHECKPOINT_FILE).is_file():
            continue
        try:
            diff = config_diff(json.loads(run_file.read_text(encoding="utf-8"))["identity"], identity)
        except (OSError, ValueError, KeyError, TypeError):
            lines.append(f"  {run_file.parent}: unreadable {RUN_FILE} (evaluate it with ckpt_path=)")
            continue
        lines.append(f"  {run_file.parent.name}: {describe_diff(diff)}")
    if (parent / CHECKPOINT_FILE).is_file():
        lines.append(f"  {parent / CHECKPOINT_FILE}: a checkpoint of the layout before run folders (ckpt_path=)")
    return lines


def _refuse_reference_folder(folder: Path) -> None:
    """A run folder of the reference trainer holds one checkpoint per saved epoch: make the user pick one."""

    def epoch(p: Path) -> int:
        digits = p.stem.removeprefix("checkpoint-epoch")
        return int(digits) if digits.isdigit() else -1

    found = sorted(folder.glob("checkpoint-epoch*.pth"), key=epoch)
    if found:
        names = ", ".join(p.name for p in found[-4:])
        raise CheckpointNotFoundError(
            f"{folder} holds checkpoints of the reference trainer ({len(found)}: ... {names}), not a "
            f"{CHECKPOINT_FILE}; name the epoch to evaluate, e.g. ckpt_path={found[-1]}"
        )


def locate_checkpoint(cfg: DictConfig) -> Path:
    """The checkpoint to evaluate: ``cfg.ckpt_path`` (a file, or a run folder holding ``last.pt``) or the run of
    ``cfg``'s config.

    Raises:
        CheckpointNotFoundError: naming the train command, and the runs of the same dataset, model and loss
            with the keys in which they differ from the request.
    """
    if cfg.get("ckpt_path"):
        path = Path(str(cfg.ckpt_path)).expanduser()
        if path.is_dir() and not (path / CHECKPOINT_FILE).is_file():
            _refuse_reference_folder(path)
        path = path / CHECKPOINT_FILE if path.is_dir() else path
        if not path.is_file():
            raise CheckpointNotFoundError(f"no checkpoint at ckpt_path={cfg.ckpt_path} ({path} is not a file)")
        return path
    identity = run_identity(cfg)
    path = Path(cfg.paths.checkpoint_dir) / run_key(identity) / CHECKPOINT_FILE
    if path.is_file():
        return path
    message = (
        f"no checkpoint of this run ({run_name(identity)}) at {path}. Train it first with:\n    "
        f"{train_command(cfg)} (and the same other overrides as this command)\nor point to one with ckpt_path=..."
    )
    others = _other_runs(cfg, identity)
    if others:
        message += "\nRuns of the same dataset, model and loss (how they differ from this request):\n"
        message += "\n".join(others)
    raise CheckpointNotFoundError(message)


def _check_fits(stored: dict[str, Any], requested: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose dataset, model (other than ``encoder_weights``) or loss contradict the config."""

    def network(identity: dict[str, Any]) -> dict[str, Any]:
        model = {k: v for k, v in identity["model"].items() if k != "encoder_weights"}
        return {"dataset": {"name": identity["dataset"]["name"]}, "model": model, "loss": identity["loss"]}

    diff = config_diff(network(stored), network(requested))
    if not diff:
        return
    # A group chosen by name (loss=focal) brings its own keys: show the name, not every key that comes with it.
    renamed = {k.split(".")[0] for k, _, _ in diff if k.count(".") == 1 and k.endswith(".name")}
    shown = [(k, a, b) for k, a, b in diff if k.split(".")[0] not in renamed or k.endswith(".name")]
    fixes = []
    for key, value, _ in shown:
        group = key.split(".")[0]
        if group in renamed:
            fixes.append(f"{group}={value}")
        elif value == "<absent>":
            fixes.append(f"~{key}")
        else:
            fixes.append(f"{key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}")
    raise CheckpointError(
        f"checkpoint {path} does not fit this evaluation: {describe_diff(shown)} ('there' = the checkpoint). "
        f"Add {' '.join(fixes)} to the command, or pick another ckpt_path="
    )


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
        cells = "".join(f"  {fmt(records[r]['class_dice'][name])} {fmt(records[r]['class_iou'][name])}" for r in rules)
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


def read_metrics(path: Path) -> dict[str, Any]:
    """The content of an existing ``metrics.json`` ({} if absent). A file that is not valid JSON with a ``rules``
    mapping is moved aside to ``metrics.json.corrupt-{time}`` (and said so), never silently overwritten."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("rules", {}), dict):
            return data
        problem = "it is JSON but not a metrics file (no 'rules' mapping)"
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"it is not valid JSON ({err})"
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    path.replace(aside)
    console.echo(f"warning: {path} was unreadable: {problem}; moved it to {aside} (nothing in it is used)")
    return {}


def _same(a: Any, b: Any) -> bool:
    return not config_diff({"v": a}, {"v": b})


def merge_metrics(path: Path, header: dict[str, Any], rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge this evaluation's ``rules`` into ``path`` and re-render ``class_scores.csv`` beside it.

    Rules already in the file stay only if they were computed from the same weights (``weights_sha256``) with
    the same ``eval_settings`` as this evaluation; the others are dropped and named. Holds the file lock of
    ``path`` for the whole read-modify-write; both files are replaced atomically.

    Returns:
        The merged ``metrics.json`` content.
    """
    new = nan_to_none(rules)
    with file_lock(path):
        previous = read_metrics(path)
        previous, header = calib.merge_calibration(previous, header, new)  # ECE entries; @T records of another T go
        merged_rules: dict[str, Any] = {}
        stale = []
        for name, record in previous.get("rules", {}).items():
            if name in new:
                merged_rules[name] = new[name]
            elif (
                isinstance(record, dict)
                and record.get("weights_sha256") == header["weights_sha256"]
                and _same(record.get("eval_settings"), header["eval_settings"])
            ):
                merged_rules[name] = record
            else:
                stale.append(name)
        merged_rules.update({name: rec for name, rec in new.items() if name not in merged_rules})
        if stale:
            console.echo(
                f"dropped {', '.join(stale)} from {path}: computed from other weights or with other evaluation "
                "settings than this evaluation (evaluate them again to bring them back)"
            )
        merged = {**header, "rules": merged_rules}
        atomic_write_json(path, merged)
        write_class_csv(path.with_name(CLASS_CSV), merged)
        calib.write_reliability_diagram(path.with_name(calib.RELIABILITY_PNG), merged)
    return merged


@torch.no_grad()
def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the run of ``cfg`` (or ``cfg.ckpt_path``) on ``cfg.dataset``'s val split with every rule in
    ``cfg.predict``, print the report and merge the scores into the run's ``metrics.json`` (module docstring).

    Under ``torchrun`` every rank runs this function; rank 0 prints and writes, all ranks return the result.

    Raises:
        ConfigError: an invalid config value (before any work).
        CheckpointNotFoundError: no checkpoint (the message holds the train command and the nearby runs).
        CheckpointError: the checkpoint is unreadable or foreign, or contradicts the config.
        ClassCountMismatchError: the checkpoint's class count differs from the dataset's.
        rankseg.data.DatasetLayoutError: the dataset root is missing or malformed, or a file in it is.

    Returns:
        The merged ``metrics.json`` content (NaN as None).
    """
    check_evaluate_config(cfg)
    check_inspect_config(cfg)
    ckpt_path = locate_checkpoint(cfg)
    with process_group(str(cfg.device)) as (info, device):
        return _evaluate(cfg, ckpt_path, info, device)


def _load_network(cfg: DictConfig, ckpt_path: Path) -> tuple[dict[str, Any], dict[str, Any], torch.nn.Module, str]:
    """(checkpoint state without the weights, its run identity, the network with the checkpoint's weights, their
    hash), after checking that the checkpoint is ours and fits ``cfg``. The network comes from ``cfg.model``
    (project configs only)."""
    fmt = str(cfg.get("ckpt_format") or "auto")
    raw = read_checkpoint_file(ckpt_path, "cpu", _EVAL_HINT)
    if fmt == "reference" or (fmt == "auto" and is_reference_checkpoint(raw)):
        return _load_reference_network(cfg, ckpt_path, raw)
    state = load_checkpoint(ckpt_path, map_location="cpu", hint=_EVAL_HINT, state=raw)
    stored_cfg = state["config"]
    check_num_classes(stored_cfg["dataset"].get("num_classes"), cfg.dataset.num_classes, ckpt_path, cfg.dataset.name)
    identity = stored_identity(state, ckpt_path)
    requested = run_identity(cfg)
    if cfg.get("ckpt_path"):
        _check_fits(identity, requested, ckpt_path)
    else:
        problem = f"{ckpt_path} holds another run than its folder says"
        check_same_run(state, ckpt_path, requested, problem, "It was moved or edited: use ckpt_path=, or retrain")
    model = build_model(cfg.model, pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:3]]
        raise CheckpointError(
            f"the weights in {ckpt_path} do not fit model {cfg.model.name!r} as configured: "
            f"{' '.join(lines)[:400]}. {_EVAL_HINT}"
        ) from None
    weights = state.pop("model")
    return state, identity, model, weights_sha256(weights)


def _load_reference_network(
    cfg: DictConfig, ckpt_path: Path, raw: Any
) -> tuple[dict[str, Any], dict[str, Any], torch.nn.Module, str]:
    """:func:`_load_network` for a checkpoint of the JMLR authors' trainer (:mod:`rankseg.engine.reference_ckpt`):
    the command line must name the configs its ``config.json`` maps to; the run identity comes from that config."""
    if not is_reference_checkpoint(raw):
        raise CheckpointError(
            f"{ckpt_path} is not a checkpoint of the reference trainer (no 'state_dict' with a 'config'); "
            "drop ckpt_format=reference for a checkpoint written by train.py"
        )
    ref = read_reference_checkpoint(ckpt_path, raw, _REFERENCE_HINT)
    check_reference_fits(ref, cfg)
    model = build_model(cfg.model, pretrained=False)
    weights = load_reference_weights(model, ref, _REFERENCE_HINT)
    identity = reference_identity(ref, cfg)
    state = {
        "config": {"loss": identity["loss"]},
        "iteration": ref.epoch,
        "total_iters": identity["epochs"],
        "progress_unit": "epoch",
        "format": "reference",
    }
    return state, identity, model, weights_sha256(weights)


def training_progress(state: dict[str, Any], ckpt_path: Path) -> tuple[dict[str, Any], str | None]:
    """How far the checkpoint's training got (``{"iteration", "total_iters"}``, or ``{"epoch", "total_epochs"}``
    for a reference checkpoint), and a note to print when it had not finished."""
    iteration, total = state["iteration"], state.get("total_iters")
    unit = state.get("progress_unit", "iteration")
    progress = {unit: iteration, "total_iters" if unit == "iteration" else f"total_{unit}s": total}
    if not (isinstance(total, int) and iteration < total):
        return progress, None
    return progress, f"note: {ckpt_path} is at {unit} {iteration}/{total}: its training has not finished"


def _evaluate(cfg: DictConfig, ckpt_path: Path, info: DistInfo, device: torch.device) -> dict[str, Any]:
    say = console.echo if info.is_main else (lambda *args, **kwargs: None)
    state, identity, model, weights_hash = _load_network(cfg, ckpt_path)
    progress, note = training_progress(state, ckpt_path)
    if note:
        say(note)
    # The checkpoint's own config files the results (a run is never filed under the command line's names).
    out_dir = Path(cfg.paths.results_dir) / "runs" / run_key(identity)
    if info.is_main:
        with file_lock(out_dir / METRICS_FILE):
            read_metrics(out_dir / METRICS_FILE)  # a corrupt file is moved aside now, not after the evaluation
    model.to(device).eval()
    loss_cfg = state["config"]["loss"]
    activation, proper = str(loss_cfg.get("activation", "softmax")), bool(loss_cfg.get("proper", False))

    rules = build_rules(cfg.predict)
    if not proper and not cfg.force_rankdice:
        skipped = [name for name, rule in rules.items() if rule.requires_proper]
        if skipped:
            say(
                f"skipping {', '.join(skipped)}: loss {loss_cfg.get('name')!r} is not strictly proper, so its "
                "outputs are not calibrated probabilities (paper: '/'); force_rankdice=true runs them anyway"
            )
        rules = {name: rule for name, rule in rules.items() if not rule.requires_proper}
        if not rules:
            raise ConfigError(
                f"nothing to evaluate: every rule in predict needs a strictly proper loss, and "
                f"{loss_cfg.get('name')!r} is not one; add a rule such as argmax, or force_rankdice=true"
            )
    val_set = build_dataset(cfg.dataset, "val")
    num_classes = int(cfg.dataset.num_classes)
    coi = OmegaConf.to_container(cfg.dataset.classes_of_interest) if cfg.dataset.get("classes_of_interest") else None
    reference_ignore = bool(cfg.reference_ignore)
    ignore_index = int(cfg.dataset.ignore_index)
    use_amp = bool(cfg.amp) and device.type == "cuda"
    val_node = {k: v for k, v in OmegaConf.to_container(cfg.dataset.val, resolve=True).items() if k != "root"}
    settings = {
        "val": val_node,
        "reference_ignore": reference_ignore,
        "ignore_index": ignore_index,
        "classes_of_interest": coi,
        "amp": use_amp,
        "activation": activation,
    }
    view = inference_settings(cfg.get("inference"))  # whole image (default) or sliding windows, flip
    if view.record() is not None:  # only when not the default, so older records still merge
        settings["inference"] = view.record()
    cal = calib.calibration_pass(
        cfg, model, activation, weights_hash, ckpt_path, out_dir, info, device, use_amp, say, identity
    )
    rules = cal.extend_rules(rules)  # calibrate=temperature: RULE@T (tempered probabilities) after each RULE
    inspector = Inspector(cfg, rules, val_set, num_classes)  # per_image=true, save_overlays=N
    accumulators = {
        name: MetricAccumulator(num_classes, coi, ignore_index, reference_ignore=reference_ignore) for name in rules
    }
    running = {name: [0.0, 0] for name in rules}  # sum and count of per-image mDice, for the progress bar
    coi_index = list(range(num_classes)) if coi is None or coi == "all" else list(coi)

    sampler = ShardedBatchSampler(len(val_set), int(cfg.eval_batch_size), info.rank, info.world_size)
    loader = DataLoader(
        val_set,
        batch_sampler=sampler,
        num_workers=int(cfg.dataset.num_workers),
        pin_memory=device.type == "cuda",
    )
    indices: list[int] = []  # dataset index of every counted image, in this rank's order
    bar = console.progress(loader, desc=f"evaluate {cfg.model.name}/{cfg.loss.name}", disable=not info.is_main)
    for step, (batch_indices, (images, targets)) in enumerate(zip(sampler.batches(), bar, strict=True)):
        if bool((targets == ignore_index).all()):  # on the loader's CPU tensor: no device synchronisation
            continue  # as the reference tester: a batch without labelled pixels is skipped
        check_target_values(targets, num_classes, ignore_index)  # on the CPU tensor: no device synchronisation
        targets = targets.to(device, non_blocking=True)
        indices += batch_indices
        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                return model_logits(model(x))

        logits, probs = infer(forward, images.to(device, non_blocking=True), view, activation)
        cal.observe(logits, probs, targets)  # ECE bins and NLL; the tempered probabilities of the @T rules
        for name, rule in rules.items():
            pred = inspector.predict(name, rule, probs, batch_indices)  # rule(probs), recording what it needs
            tp, fp, fn = accumulators[name].update(pred, targets, target_checked=True)
            dice = scores_from_stats(tp, fp, fn)[0][:, coi_index]
            per_image = torch.nanmean(dice, dim=1)
            ok = ~torch.isnan(per_image)
            running[name][0] += per_image.nan_to_num(0.0).sum()  # device tensors: read once per N batches
            running[name][1] += ok.sum()
        if step % _POSTFIX_EVERY == 0:
            bar.set_postfix(_running_mdice(running))
    if running:
        bar.set_postfix(_running_mdice(running))
    bar.close()
    counts = gather_counts(accumulators, indices, info, device)
    inspector.gather(info, device)
    calibration = cal.finish(indices, info, device, {"weights_sha256": weights_hash, "eval_settings": settings})

    merged = None
    if info.is_main:
        header = {
            "dataset": identity["dataset"]["name"],
            "model": identity["model"]["name"],
            "loss": identity["loss"]["name"],
            "run": run_name(identity),
            "run_config": identity,
            "checkpoint": str(ckpt_path),
            "checkpoint_format": state.get("format", "project"),
            "weights_sha256": weights_hash,
            "training": progress,
            "eval_settings": settings,
            "calibration": calibration,
            "commit": git_commit(),
        }
        cases = getattr(val_set, "case_of_index", None)  # CT slices: RMA averages mIoU^I per case
        merged = _report(cfg, header, counts, coi, out_dir, cases)
        inspector.write(out_dir, header, counts)  # per_image.csv, plots/, overlays/
        tracking.log_evaluation(cfg, merged, out_dir, list(rules))  # wandb (offline by default); logger=none: off
    return broadcast_object(merged, info)


def rule_records(
    counts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    class_names: list[str],
    coi: Any,
    provenance: dict[str, Any],
    cases: list[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """One ``metrics.json`` record per rule: the aggregate scores, per-class dicts and ``provenance`` (which must
    hold ``eval_settings`` with ``reference_ignore``). ``cases`` (a case id per val item, CT slices): the per-image
    ``mdice_image``/``miou_image`` are averaged per case, then over cases, when every item was counted."""
    records = {}
    for name, stats in counts.items():
        groups = cases if cases is not None and len(cases) == stats[0].shape[0] else None
        scores = aggregate(*stats, classes_of_interest=coi, groups=groups)
        keys = ("mdice", "miou", "dataset_dice", "dataset_iou", "mdice_image", "miou_image")
        record: dict[str, Any] = {k: scores[k] for k in keys}
        for key in ("class_dice", "class_iou", "class_dataset_dice", "class_dataset_iou"):
            record[key] = dict(zip(class_names, scores[key], strict=True))
        reference_ignore = provenance["eval_settings"]["reference_ignore"]
        record.update(num_images=scores["num_images"], reference_ignore=reference_ignore, **provenance)
        record["image_scores_averaged_over"] = "cases" if groups is not None else "images"
        records[name] = record
    return records


# Batches between two readings of the running mDice shown by the progress bar (each reading syncs the device).
_POSTFIX_EVERY = 10


def _running_mdice(running: dict[str, list[Any]]) -> dict[str, str]:
    return {f"mDice[{n}]": f"{float(s) / max(int(c), 1):.3f}" for n, (s, c) in running.items()}


def _report(
    cfg: DictConfig,
    header: dict[str, Any],
    counts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    coi: Any,
    out_dir: Path,
    cases: list[int] | None = None,
) -> dict[str, Any]:
    """Aggregate, print the table, merge into ``metrics.json`` and render ``class_scores.csv``."""
    class_names = [str(n) for n in cfg.dataset.class_names]
    provenance = {k: header[k] for k in ("checkpoint", "weights_sha256", "training", "eval_settings", "commit")}
    records = calib.tag_tempered(rule_records(counts, class_names, coi, provenance, cases), header)
    num_images = records[next(iter(records))]["num_images"] if records else 0
    title = (
        f"Results for run {header['dataset']}/{header['model']}/{header['loss']}/{header['run']} on "
        f"{cfg.dataset.name} val ({num_images} images, x100; checkpoint {header['checkpoint']})"
    )
    if records:
        console.echo(format_report(records, class_names, title))
    console.echo(calib.describe_calibration(header, out_dir))
    merged = merge_metrics(out_dir / METRICS_FILE, header, records)
    console.echo(f"wrote {out_dir / METRICS_FILE} and {out_dir / CLASS_CSV}")
    return merged
