"""Apply a trained run and one or more prediction rules to a folder of images, writing one PNG per image.

Run through ``python predict.py input=DIR ...`` (see ``configs/predict_images.yaml``) or call
:func:`run_prediction`.

Which network: the run of the config (the same dataset, model, loss and training overrides as ``train.py``),
or ``ckpt_path=``, with the checks of ``evaluate.py`` (:func:`rankseg.engine.evaluate.locate_checkpoint`,
``_load_network``). Rules: the ``predict`` group (``predict=rma`` or ``predict=[rma,threshold]``); rules that
need calibrated probabilities are skipped for losses that are not strictly proper unless ``force_rankdice=true``,
as in evaluation.

Geometry. Each image is read as the datasets read it (RGB) and goes through the dataset's evaluation transform
without its centre crop: the shorter side resized to ``dataset.crop_size`` (bilinear; nothing with
``dataset.eval_geometry=full``), padded at the bottom and right with black to a multiple of ``size_divisor``
(as training pads), normalised with the dataset's mean and std. The network's logits are cropped back to the
resized image, turned into probabilities (softmax or sigmoid, by the loss), and the probabilities are resized
bilinearly to the image's original size *before* the rule, so the rule (RankSEG chooses how many pixels to keep
per image and class) decides on the pixels of the original image. An image of exactly the evaluation size is
therefore predicted exactly as ``evaluate.py`` predicts it. Images are batched by original size
(``eval_batch_size`` per batch), so any mix of sizes works.

Outputs, per rule folder: ``{rel}.png`` for rules returning label maps (palette PNG; index = class id, values
the rule leaves unassigned such as 255 kept), ``{rel}_{class}.png`` (0/255) per class for rules returning
per-class masks, ``overlays/{rel}.png`` with ``save_overlays=true``, and ``predictions.json`` (run, checkpoint
weights hash, rule, settings, and every file with its source image). ``{rel}`` is the image's path relative to
the input folder (or the glob's fixed part) without its suffix. One rule writes into ``output=``; several write
into ``output/{rule}/``; without ``output=`` the folder is ``{paths.output_dir}/predictions/{run}/{rule}/``.

Overwriting: a folder whose ``predictions.json`` records the same weights, rule and settings (preprocessing,
activation, AMP, palette, overlay alpha) receives the new files (replacing earlier ones of the same name, with a
note). Predictions of another network, rule or settings in the folder, or any existing file there that no record
of this kind lists, stop the command with one message before anything is written, unless ``overwrite=true``
(which deletes the files the old record lists, and only those). An output never replaces an input image. Every
file is written atomically (temporary file, then ``os.replace``).

Unreadable images are named on stderr, skipped and counted in the summary line; an input that names no image
is an error (exit status 2 from ``predict.py``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path, PurePath
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from rankseg.data.base import SegmentationDataset
from rankseg.data.transforms import build_eval_transform
from rankseg.engine.build import build_rules, resolve_device
from rankseg.engine.config_checks import ConfigError, check_evaluate_config
from rankseg.engine.console import echo, progress
from rankseg.engine.evaluate import _load_network, locate_checkpoint, training_progress
from rankseg.engine.image_files import (
    READ_ERRORS,
    InputImage,
    PredictionInputError,
    blend_overlay,
    class_file_names,
    find_images,
    image_size,
    palette_for,
    read_image,
    read_problem,
    write_png,
)
from rankseg.engine.runfiles import atomic_write_json, file_lock, git_commit
from rankseg.engine.runs import config_diff, run_key, run_name
from rankseg.engine.train import model_logits
from rankseg.predict import PredictionRule, probabilities

__all__ = ["MANIFEST_FILE", "Preprocess", "PredictionInputError", "run_prediction"]

MANIFEST_FILE = "predictions.json"
_FORMAT = 1
_LISTED = 10  # at most this many skipped files are named in the summary line


def _check_predict_config(cfg: DictConfig) -> None:
    """The keys of ``configs/predict_images.yaml`` besides those of evaluation."""
    if cfg.get("input") in (None, ""):
        raise PredictionInputError(
            "input= is required: a folder of images, a glob such as input='photos/*.jpg', or one image"
        )
    for key in ("save_overlays", "overwrite", "force_rankdice", "amp"):
        if not isinstance(cfg.get(key), bool):
            raise ConfigError(f"{key} must be true or false, got {cfg.get(key)!r}")
    alpha = cfg.get("overlay_alpha")
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"overlay_alpha must be a number in [0, 1], got {alpha!r}")
    divisor = cfg.get("size_divisor")
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise ConfigError(f"size_divisor must be a positive integer, got {divisor!r}; e.g. size_divisor=32")


class Preprocess:
    """The dataset's evaluation transform without its centre crop, then padding to ``size_divisor``.

    ``resize`` holds the evaluation transform's geometric steps (the shorter side to ``crop_size``), ``finish``
    the padding (bottom/right, black, before normalisation, as in training) and the normalisation.
    """

    def __init__(self, dataset_cfg: DictConfig, size_divisor: int) -> None:
        node = dataset_cfg.val
        cls = get_object(str(node._target_))
        if not (isinstance(cls, type) and issubclass(cls, SegmentationDataset)):
            raise ConfigError(f"dataset.val._target_={node._target_} is not a SegmentationDataset")
        geometry = str(node.get("eval_geometry", "crop"))
        crop_size = node.get("crop_size")
        try:
            steps = list(build_eval_transform(crop_size, cls.MEAN, cls.STD, geometry=geometry).transforms)
        except ValueError as err:
            raise ConfigError(f"dataset.val: {err}") from None
        geometric = [t for t in steps if not isinstance(t, A.CenterCrop | A.Normalize)]
        normalize = [t for t in steps if isinstance(t, A.Normalize)]
        pad = A.PadIfNeeded(
            min_height=None,
            min_width=None,
            pad_height_divisor=size_divisor,
            pad_width_divisor=size_divisor,
            position="top_left",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
        )
        self.resize = A.Compose(geometric)
        self.finish = A.Compose([pad, *normalize])
        self.settings = {
            "transform": f"{cls.__name__} evaluation transform without the centre crop",
            "eval_geometry": geometry,
            "shorter_side": int(crop_size) if geometry == "crop" else None,
            "mean": [float(v) for v in cls.MEAN],
            "std": [float(v) for v in cls.STD],
            "size_divisor": size_divisor,
            "padding": "bottom/right, black (0) before normalisation",
            "to_original_size": "probabilities resized bilinearly (align_corners=False), then the rule",
        }

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        """A normalised, padded (B, 3, H', W') float32 batch of same-size RGB uint8 images, and the size of
        the resized images inside the padding."""
        resized = [self.resize(image=image)["image"] for image in images]
        size = resized[0].shape[:2]
        batch = np.stack([self.finish(image=image)["image"] for image in resized])
        return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)), size


def _usable_rules(cfg: DictConfig, loss_cfg: dict[str, Any]) -> dict[str, PredictionRule]:
    """The rules of ``cfg.predict``, without those that need a strictly proper loss when the run's is not
    (unless ``force_rankdice``), as in evaluation."""
    rules = build_rules(cfg.predict)
    if bool(loss_cfg.get("proper", False)) or cfg.force_rankdice:
        return rules
    skipped = [name for name, rule in rules.items() if rule.requires_proper]
    rules = {name: rule for name, rule in rules.items() if not rule.requires_proper}
    if not rules:
        raise ConfigError(
            f"nothing to predict: every rule in predict needs a strictly proper loss, and {loss_cfg.get('name')!r} "
            "is not one; use a rule such as predict=argmax, or force_rankdice=true"
        )
    if skipped:
        echo(
            f"skipping {', '.join(skipped)}: loss {loss_cfg.get('name')!r} is not strictly proper, so its outputs "
            "are not calibrated probabilities; force_rankdice=true runs them anyway"
        )
    return rules


def _rule_kind(rule: PredictionRule, num_classes: int) -> str:
    """``label_map`` or ``class_masks``, from the rule's output on a tiny probability map."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(1, num_classes, 4, 4, generator=gen).softmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = rule(probs)
    return "label_map" if out.dim() == probs.dim() - 1 else "class_masks"


class _RuleFolder:
    """One rule's output folder: its planned files, the conflict checks, and ``predictions.json``."""

    def __init__(self, name: str, folder: Path, kind: str, record: dict[str, Any], slugs: list[str]) -> None:
        self.name, self.folder, self.kind, self.record, self.slugs = name, folder, kind, record, slugs
        self.manifest = folder / MANIFEST_FILE
        self.files: dict[str, Any] = {}
        self.written: dict[str, Any] = {}

    def outputs(self, rel: PurePath, overlays: bool) -> list[str]:
        """The files of one image, relative to the folder."""
        names = [f"{rel}.png"] if self.kind == "label_map" else [f"{rel}_{slug}.png" for slug in self.slugs]
        return names + ([str(PurePath("overlays", f"{rel}.png"))] if overlays else [])

    def _read_old(self) -> dict[str, Any] | None:
        if not self.manifest.is_file():
            return None
        try:
            old = json.loads(self.manifest.read_text(encoding="utf-8"))
            if isinstance(old, dict) and isinstance(old.get("files"), dict):
                return old
            problem = "it is not a predictions record"
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            problem = f"it is not valid JSON ({err})"
        aside = self.manifest.with_name(f"{MANIFEST_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        self.manifest.replace(aside)
        echo(f"warning: {self.manifest} was unreadable ({problem}); moved it to {aside}")
        return None

    def _difference(self, old: dict[str, Any]) -> str | None:
        """How the predictions recorded in ``old`` were made differently from these, or None."""
        if old.get("weights_sha256") != self.record["weights_sha256"]:
            return f"another network (run {old.get('run')!r}, checkpoint {old.get('checkpoint')})"
        if old.get("rule") != self.name or config_diff(
            {"v": old.get("rule_config")}, {"v": self.record["rule_config"]}
        ):
            return f"another rule ({old.get('rule')!r} with {old.get('rule_config')})"
        diff = config_diff(old.get("settings") or {}, self.record["settings"])
        if diff or old.get("output") != self.kind:
            shown = "; ".join(f"{k}={a!r} there, {b!r} here" for k, a, b in diff[:4])
            return f"other settings ({shown or 'output ' + str(old.get('output'))})"
        return None

    def prepare(self, images: Sequence[InputImage], overlays: bool, overwrite: bool, sources: set[Path]) -> None:
        """Check the folder against the planned files (module docstring, "Overwriting") and record the run as
        started (so an interrupted run's files are known to the next one).

        Raises:
            PredictionInputError: a conflict, before anything is written.
        """
        old = self._read_old()
        fix = "choose another output=, or add overwrite=true"
        if old is not None:
            difference = self._difference(old)
            if difference is None:
                self.files = dict(old["files"])
                for rel, names in dict(old.get("pending") or {}).items():
                    self.files.setdefault(rel, {"outputs": list(names)})
            elif not overwrite:
                raise PredictionInputError(
                    f"{self.folder} holds predictions of {difference} ({self.manifest}); {fix} (which deletes the "
                    "files that record lists first)"
                )
            else:
                removed = self._remove_listed(old)
                echo(f"overwrite=true: deleted {removed} files of the earlier predictions in {self.folder}")
        known = {name for entry in self.files.values() for name in entry.get("outputs", [])}
        planned = [name for image in images for name in self.outputs(image.rel, overlays)]
        for name in planned:
            if (self.folder / name).resolve() in sources:
                raise PredictionInputError(f"{self.folder / name} is an input image; write the predictions elsewhere")
        foreign = [name for name in planned if name not in known and (self.folder / name).exists()]
        if foreign and not overwrite:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise PredictionInputError(
                f"{self.folder / foreign[0]}{more} exists and no record of predictions of this run and rule in "
                f"{self.folder} lists it; {fix} (which replaces such files)"
            )
        replaced = sum((self.folder / name).exists() for name in planned)
        if replaced:
            echo(f"note: replacing {replaced} existing files in {self.folder} (same network, rule and settings)")
        pending = {str(image.rel): self.outputs(image.rel, overlays) for image in images}
        self._write({"status": "running", "pending": pending})

    def _remove_listed(self, old: dict[str, Any]) -> int:
        """Delete the files that ``old`` lists (finished and pending), inside this folder only."""
        lists = [e.get("outputs", []) for e in old["files"].values() if isinstance(e, dict)]
        lists += list(dict(old.get("pending") or {}).values())
        return sum(self._remove(str(name)) for names in lists for name in names)

    def _remove(self, name: str) -> bool:
        path = (self.folder / name).resolve()
        if path.is_relative_to(self.folder.resolve()) and path.is_file():
            path.unlink()
            return True
        return False

    def add(self, image: InputImage, size: tuple[int, int], outputs: list[str]) -> None:
        """Record the files written for ``image``. Files of an earlier entry of the same name that were not
        rewritten (e.g. an overlay) stay listed if they came from the same source file, and are deleted if they
        came from another, so the folder holds what the record says."""
        rel, source = str(image.rel), str(image.path.resolve())
        previous = self.files.get(rel, {})
        stale = sorted(set(previous.get("outputs", [])) - set(outputs))
        if previous.get("source") == source:
            outputs = outputs + stale
        else:
            for name in stale:
                self._remove(name)
        self.files[rel] = self.written[rel] = {"source": source, "size": list(size), "outputs": outputs}

    def finish(self, skipped: dict[str, str]) -> None:
        self._write({"status": "complete", "skipped": skipped})

    def _write(self, extra: dict[str, Any]) -> None:
        files = dict(sorted(self.files.items()))
        atomic_write_json(
            self.manifest, {**self.record, "rule": self.name, "output": self.kind, **extra, "files": files}
        )


def run_prediction(cfg: DictConfig) -> dict[str, Any]:
    """Predict every image of ``cfg.input`` with the run of ``cfg`` (or ``cfg.ckpt_path``) and each rule of
    ``cfg.predict``, writing PNGs and ``predictions.json`` (module docstring).

    Raises:
        ConfigError: an invalid config value (before any work).
        PredictionInputError: ``input=`` names no readable image, or the output folder holds conflicting files.
        CheckpointNotFoundError: no checkpoint (the message holds the train command and the nearby runs).
        CheckpointError: the checkpoint is unreadable or foreign, or contradicts the config.

    Returns:
        ``{"run", "checkpoint", "weights_sha256", "output", "rules": {name: {"folder", "kind", "files"}},
        "written", "skipped": {file: reason}}`` (``files``: this command's images, keyed by their output name).
    """
    check_evaluate_config(cfg)
    _check_predict_config(cfg)
    preprocess = Preprocess(cfg.dataset, int(cfg.size_divisor))
    palette_name, palette = palette_for(
        OmegaConf.to_container(cfg.palette) if OmegaConf.is_config(cfg.palette) else cfg.palette,
        str(cfg.dataset.name),
        int(cfg.dataset.num_classes),
    )
    images, ignored = find_images(str(cfg.input))
    ckpt_path = locate_checkpoint(cfg)
    state, identity, model, weights_hash = _load_network(cfg, ckpt_path)
    device = resolve_device(str(cfg.device))
    trained, note = training_progress(state, ckpt_path)
    if note:
        echo(note)
    loss_cfg = state["config"]["loss"]
    rules = _usable_rules(cfg, loss_cfg)
    header = {
        "format": _FORMAT,
        "run": run_name(identity),
        "run_key": str(run_key(identity)),
        "run_config": identity,
        "checkpoint": str(ckpt_path),
        "weights_sha256": weights_hash,
        "training": trained,
        "settings": {
            "activation": str(loss_cfg.get("activation", "softmax")),
            "amp": bool(cfg.amp) and device.type == "cuda",
            "preprocess": preprocess.settings,
            "palette": palette_name if palette_name != "custom" else palette[: 3 * int(cfg.dataset.num_classes)],
            "overlay_alpha": float(cfg.overlay_alpha),
        },
        "class_names": [str(n) for n in cfg.dataset.class_names],
        "commit": git_commit(),
    }
    root, targets = _rule_folders(cfg, identity, rules, header)
    if ignored:
        shown = ", ".join(p.name for p in ignored[:_LISTED]) + (" ..." if len(ignored) > _LISTED else "")
        echo(f"note: left out {len(ignored)} file(s) of input={cfg.input} that are not images by name: {shown}")

    skipped: dict[str, str] = {}
    groups = _group_by_size(images, skipped)
    model.to(device).eval()
    count = sum(map(len, groups.values()))
    echo(f"predicting {count} images of input={cfg.input} with run {header['run_key']}, rules {', '.join(rules)}")
    job = _Job(model, preprocess, rules, targets, palette, header["settings"], device, cfg)
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        for target in targets.values():
            stack.enter_context(file_lock(target.manifest))
        sources = {image.path.resolve() for image in images}
        for target in targets.values():
            target.prepare([i for group in groups.values() for i in group], job.overlays, bool(cfg.overwrite), sources)
        bar = progress(total=count, desc="predict", unit="img")
        for group in groups.values():
            for start in range(0, len(group), job.batch_size):
                chunk = group[start : start + job.batch_size]
                job.run(chunk, skipped)
                bar.update(len(chunk))
        bar.close()
        for target in targets.values():
            target.finish(skipped)

    written = len(next(iter(targets.values())).written)
    if not written:
        raise PredictionInputError(
            f"none of the {len(images)} images of input={cfg.input} could be read: {_list(skipped)}"
        )
    folders = [str(t.folder) for t in targets.values()]
    where = folders[0] if len(folders) == 1 else f"{root}/{{{','.join(rules)}}}"
    line = f"wrote {written} predictions ({', '.join(rules)}) to {where}"
    echo(line + (f", skipped {len(skipped)} unreadable: {_list(skipped)}" if skipped else ""))
    return {
        "run": header["run_key"],
        "checkpoint": str(ckpt_path),
        "weights_sha256": weights_hash,
        "output": str(root),
        "rules": {name: {"folder": str(t.folder), "kind": t.kind, "files": t.written} for name, t in targets.items()},
        "written": written,
        "skipped": skipped,
    }


def _rule_folders(
    cfg: DictConfig, identity: dict[str, Any], rules: dict[str, PredictionRule], header: dict[str, Any]
) -> tuple[Path, dict[str, _RuleFolder]]:
    """The output root and one :class:`_RuleFolder` per rule: ``output=`` itself for one rule, ``output/{rule}``
    for several; without ``output=``, ``{paths.output_dir}/predictions/{run}/{rule}``."""
    if cfg.get("output"):
        root = Path(str(cfg.output)).expanduser()
        folders = {name: root if len(rules) == 1 else root / name for name in rules}
    else:
        root = Path(cfg.paths.output_dir) / "predictions" / run_key(identity)
        folders = {name: root / name for name in rules}
    slugs = class_file_names(header["class_names"])
    targets = {}
    for name, rule in rules.items():
        record = {**header, "rule_config": OmegaConf.to_container(cfg.predict[name], resolve=True)}
        kind = _rule_kind(rule, len(header["class_names"]))
        targets[name] = _RuleFolder(name, folders[name], kind, record, slugs)
    return root, targets


def _group_by_size(images: Sequence[InputImage], skipped: dict[str, str]) -> dict[tuple[int, int], list[InputImage]]:
    """The images by original ``(height, width)`` (read from their headers), in input order; unreadable ones
    are named on stderr and added to ``skipped``.

    Raises:
        PredictionInputError: none is readable.
    """
    groups: dict[tuple[int, int], list[InputImage]] = {}
    for image in images:
        try:
            groups.setdefault(image_size(image.path), []).append(image)
        except READ_ERRORS as err:
            _skip(image, err, skipped)
    if not groups:
        raise PredictionInputError(f"none of the {len(images)} images given by input could be read: {_list(skipped)}")
    return groups


def _skip(image: InputImage, err: BaseException, skipped: dict[str, str]) -> None:
    name = str(image.rel.with_suffix(image.path.suffix))
    skipped[name] = read_problem(err, image.path)
    echo(f"skipped {image.path}: unreadable image ({skipped[name]})", err=True)


class _Job:
    """The network, the rules and their folders: predicts and writes one batch of same-size images at a time."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Preprocess,
        rules: dict[str, PredictionRule],
        targets: dict[str, _RuleFolder],
        palette: list[int],
        settings: dict[str, Any],
        device: torch.device,
        cfg: DictConfig,
    ) -> None:
        self.model, self.preprocess, self.rules, self.targets = model, preprocess, rules, targets
        self.colours = np.asarray(palette, dtype=np.float32).reshape(256, 3)
        self.palette, self.device = palette, device
        self.activation, self.use_amp = settings["activation"], settings["amp"]
        self.num_classes = int(cfg.dataset.num_classes)
        self.overlays, self.alpha = bool(cfg.save_overlays), float(cfg.overlay_alpha)
        self.batch_size = int(cfg.eval_batch_size)

    def run(self, chunk: Sequence[InputImage], skipped: dict[str, str]) -> None:
        """Read, predict and write ``chunk`` (images of one header size; a file that fails to decode is skipped)."""
        readable: dict[tuple[int, int], list[tuple[InputImage, np.ndarray]]] = {}
        for image in chunk:
            try:
                array = read_image(image.path)
            except READ_ERRORS as err:
                _skip(image, err, skipped)
                continue
            readable.setdefault(array.shape[:2], []).append((image, array))
        for size, items in readable.items():
            probs = self.probabilities([array for _, array in items], size)
            for name, rule in self.rules.items():
                self.write(self.targets[name], rule(probs), items)

    def probabilities(self, arrays: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
        """Class probabilities of same-size images at their original ``size`` (module docstring, "Geometry").

        Shape:
            - output: (B, C, H, W) float32 on the device, (H, W) = ``size``.
        """
        batch, (height, width) = self.preprocess(arrays)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            logits = model_logits(self.model(batch.to(self.device)))
        probs = probabilities(logits[..., :height, :width], self.activation)
        if (height, width) != tuple(size):
            probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
        return probs

    def write(self, target: _RuleFolder, prediction: torch.Tensor, items: list[tuple[InputImage, np.ndarray]]) -> None:
        """Write one batch of one rule: label maps or class masks, and overlays."""
        for (image, array), out in zip(items, prediction.cpu().numpy(), strict=True):
            names = target.outputs(image.rel, self.overlays)
            if target.kind == "label_map":
                if out.min() < 0 or out.max() > 255:
                    raise ConfigError(
                        f"rule {target.name!r} returned label values outside 0-255 (min {out.min()}, max "
                        f"{out.max()}), which a PNG label map cannot hold; give it a void_index in [num_classes, 255]"
                    )
                labels = out.astype(np.uint8)
                write_png(target.folder / names[0], labels, self.palette)
                colour, covered = self.colours[labels], labels < self.num_classes
            else:
                for mask, name in zip(out, names, strict=False):
                    write_png(target.folder / name, mask.astype(np.uint8) * 255)
                count = out.sum(0)
                colour = np.einsum("chw,cd->hwd", out.astype(np.float32), self.colours[: self.num_classes])
                colour /= np.maximum(count, 1)[..., None]
                covered = count > 0
            if self.overlays:
                write_png(target.folder / names[-1], blend_overlay(array, colour, covered, self.alpha))
            target.add(image, array.shape[:2], names)


def _list(skipped: dict[str, str]) -> str:
    items = [f"{name} ({reason})" for name, reason in list(skipped.items())[:_LISTED]]
    if len(skipped) > _LISTED:
        items.append(f"and {len(skipped) - _LISTED} more")
    return ", ".join(items)
