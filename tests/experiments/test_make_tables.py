"""scripts/make_tables.py on runs trees written here in the real metrics.json format, and the published CSV as data.

Expected numbers are derived by hand in the comments: values are percentages, pooled over the runs that differ
only by ``seed`` as mean ± sample standard deviation (denominator n - 1), gains are per-run differences to argmax.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from rankseg.experiments.plots import plot_class_gains, plot_gains
from rankseg.experiments.tables import (
    build_class_table,
    build_table,
    load_published,
    load_runs,
    render_markdown,
    strict_best,
    summarize,
)

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "results" / "published" / "published_tables.csv"
CLASSES = ["background", "a", "b"]  # classes of interest: a, b (background is left out of every mean)

FIXTURE_PUBLISHED = """dataset,model,loss,rule,mdice,miou,note
voc2012,DeepLabV3+,CE,threshold,63.6,56.7,
voc2012,DeepLabV3+,CE,argmax,61.9,55.3,
voc2012,DeepLabV3+,CE,rankdice,64.01,57.01,
voc2012,DeepLabV3+,SoftDice,threshold,,,-
voc2012,DeepLabV3+,SoftDice,argmax,,,-
voc2012,DeepLabV3+,SoftDice,rankdice,,,/
voc2012,PSPNet,CE,threshold,64.6,57.1,
voc2012,PSPNet,CE,argmax,63.2,55.9,
voc2012,PSPNet,CE,rankdice,65.4,57.8,
"""
FIXTURE_TYPOS = """dataset,model,loss,rule,field,published,logged,source
voc2012,DeepLabV3+,CE,rankdice,mdice,64.01,64.1,test
"""

LOSSES = {
    "ce": {"_target_": "torch.nn.CrossEntropyLoss", "ignore_index": 255, "name": "ce", "proper": True},
    "soft_dice": {"_target_": "rankseg.losses.SoftDiceLoss", "name": "soft_dice", "proper": False},
    # a loss that no config, list or table knows: only its stored `proper: false` makes RankSEG rules '/'
    "wobbly": {"_target_": "my_pkg.WobblyLoss", "name": "wobbly", "proper": False},
}


def _record(mdice, miou, ds_dice=None, ds_iou=None, cls_dice=None, cls_iou=None):
    """A rule record as evaluate.py writes it (fractions; class dicts over all classes)."""
    return {
        "mdice": mdice,
        "miou": miou,
        "dataset_dice": ds_dice,
        "dataset_iou": ds_iou,
        "class_dice": dict(zip(CLASSES, cls_dice or [None] * 3, strict=True)),
        "class_iou": dict(zip(CLASSES, cls_iou or [None] * 3, strict=True)),
        "num_images": 10,
        "weights_sha256": "0" * 64,
        "eval_settings": {"classes_of_interest": [1, 2], "reference_ignore": False},
    }


def _simple(mdice, miou, ds_offset=0.10, b_iou=True):
    """Record with dataset = mean + offset, class a = mean + 0.05, class b = mean - 0.05 (b's IoU optional)."""
    return _record(
        mdice,
        miou,
        None if mdice is None else round(mdice + ds_offset, 10),
        None if miou is None else round(miou + ds_offset, 10),
        [0.9, round(mdice + 0.05, 10), round(mdice - 0.05, 10)],
        [0.8, round(miou + 0.05, 10), round(miou - 0.05, 10) if b_iou else None],
    )


def _write_run(root: Path, dataset: str, model: str, loss: str, seed: int, rules: dict, lr: float = 0.01) -> None:
    run_config = {
        "dataset": {"name": dataset, "num_classes": 3, "ignore_index": 255, "train": {"split": "train", "seed": 0}},
        "model": {"_target_": "x.Model", "encoder_name": "resnet18", "name": model},
        "loss": LOSSES[loss],
        "seed": seed,
        "epochs": 2,
        "batch_size": 4,
        "optimizer": {"lr": lr, "momentum": 0.9},
    }
    run = f"resnet18-seed{seed}-{zlib.crc32(repr((model, loss, seed, lr)).encode()):08x}"
    folder = root / dataset / model / loss / run
    folder.mkdir(parents=True)
    payload = {
        "dataset": dataset,
        "model": model,
        "loss": loss,
        "run": run,
        "run_config": run_config,
        "checkpoint": f"checkpoints/{run}/last.pt",
        "weights_sha256": "0" * 64,
        "training": {"iteration": 10, "total_iters": 10},
        "eval_settings": {"classes_of_interest": [1, 2], "reference_ignore": False},
        "commit": "abc",
        "rules": rules,
    }
    (folder / "metrics.json").write_text(json.dumps(payload), encoding="utf-8")


# Group A, DeepLabV3+ / CE, seeds 0, 1, 2 (mIoU = mDice - 10 everywhere; dataset-level = mean + 10, argmax + 20):
#   threshold 30, 32, 34 -> 32.0, std sqrt((4 + 0 + 4) / 2) = 2.0
#   argmax    31, 33, 35 -> 33.0 ± 2.0               dataset-level 51, 53, 55 -> 53.0 ± 2.0 (best dataset Dice)
#   rankdice  35, 36, 40 -> 37.0, std sqrt((4 + 1 + 9) / 2) = sqrt(7) = 2.65
#   rma       34, 35 (seed 2 lacks it) -> 34.5, std sqrt(0.5) = 0.71, [n=2]
#   exact     36, 37, 41 -> 38.0 ± 2.65 (strict best mDice)
#   gains over argmax per seed: threshold -1, -1, -1 -> -1.0 ± 0.0; rankdice 4, 3, 5 -> +4.0 ± 1.0;
#   rma 3, 2 -> +2.5 ± 0.71 [n=2]; exact 5, 4, 6 -> +5.0 ± 1.0
A = {
    "threshold": [0.30, 0.32, 0.34],
    "argmax": [0.31, 0.33, 0.35],
    "rankdice": [0.35, 0.36, 0.40],
    "rma": [0.34, 0.35, None],
    "exact": [0.36, 0.37, 0.41],
}
# Group B, DeepLabV3+ / wobbly (proper: false), seeds 0, 1; exact was forced (force_rankdice=true), rankdice and
# rma were skipped, so '/'. Class b has no IoU in seed 1 (absent in every image) -> [n=1] in its IoU cells.
#   threshold 20, 22 -> 21.0 ± sqrt(2) = 1.41; argmax 21, 21 -> 21.0 ± 0.0: a tie for the top, so no bold
#   exact (forced) 20, 20 -> 20.0 ± 0.0 with a dagger; gains: threshold -1, +1 -> +0.0 ± 1.41, exact -1.0 ± 0.0
B = {"threshold": [0.20, 0.22], "argmax": [0.21, 0.21], "exact": [0.20, 0.20]}
# Group C, PSPNet / CE, seed 0: threshold and argmax all zero (no bold), the RankSEG rules not evaluated.
C = {"threshold": [0.0], "argmax": [0.0]}


@pytest.fixture()
def toy_runs(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        rules = {}
        for rule, values in A.items():
            if values[seed] is not None:
                offset = 0.20 if rule == "argmax" else 0.10
                rules[rule] = _simple(values[seed], round(values[seed] - 0.10, 10), ds_offset=offset)
        _write_run(runs, "toyset", "deeplabv3plus", "ce", seed, rules)
    for seed in range(2):
        rules = {r: _simple(v[seed], round(v[seed] - 0.10, 10), b_iou=seed == 0) for r, v in B.items()}
        _write_run(runs, "toyset", "deeplabv3plus", "wobbly", seed, rules)
    _write_run(runs, "toyset", "pspnet", "ce", 0, {r: _record(0.0, 0.0, 0.0, 0.0, [0.0] * 3, [0.0] * 3) for r in C})
    published = tmp_path / "published_tables.csv"
    published.write_text("dataset,model,loss,rule,mdice,miou,note\n", encoding="utf-8")
    return runs, published, tmp_path / "tables"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_tables_script", ROOT / "scripts" / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(md: str, heading: str) -> str:
    """The lines of one '## heading' section (up to the next heading), or the part before the first one."""
    parts = md.split("\n## ")
    if heading == "":
        return parts[0]
    (found,) = [p for p in parts if p.startswith(heading + "\n")]
    return found


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


EXPECTED_TOY_MAIN = """\
| Model | Loss | Runs | Threshold | Argmax | mRankDice | RMA | Exact |
|---|---|---|---|---|---|---|---|
| DeepLabV3+ | CE | 3 | (32.0 ± 2.0, 22.0 ± 2.0) | (33.0 ± 2.0, 23.0 ± 2.0) | (37.0 ± 2.6, 27.0 ± 2.6) \
| (34.5 ± 0.7, 24.5 ± 0.7) [n=2] | **(38.0 ± 2.6, 28.0 ± 2.6)** |
| DeepLabV3+ | wobbly | 2 | (21.0 ± 1.4, 11.0 ± 1.4) | (21.0 ± 0.0, 11.0 ± 0.0) | / | / | (20.0 ± 0.0, 10.0 ± 0.0)† |
| PSPNet | CE | 1 | (0.0, 0.0) | (0.0, 0.0) | rule missing | rule missing | rule missing |"""

EXPECTED_TOY_DATASET_LEVEL = """\
| Model | Loss | Runs | Threshold | Argmax | mRankDice | RMA | Exact |
|---|---|---|---|---|---|---|---|
| DeepLabV3+ | CE | 3 | (42.0 ± 2.0, 32.0 ± 2.0) | **(53.0 ± 2.0, 43.0 ± 2.0)** | (47.0 ± 2.6, 37.0 ± 2.6) \
| (44.5 ± 0.7, 34.5 ± 0.7) [n=2] | (48.0 ± 2.6, 38.0 ± 2.6) |
| DeepLabV3+ | wobbly | 2 | (31.0 ± 1.4, 21.0 ± 1.4) | (31.0 ± 0.0, 21.0 ± 0.0) | / | / | (30.0 ± 0.0, 20.0 ± 0.0)† |
| PSPNet | CE | 1 | (0.0, 0.0) | (0.0, 0.0) | rule missing | rule missing | rule missing |"""

EXPECTED_TOY_GAINS = """\
| Model | Loss | Runs | Threshold | mRankDice | RMA | Exact |
|---|---|---|---|---|---|---|
| DeepLabV3+ | CE | 3 | (−1.0 ± 0.0, −1.0 ± 0.0) | (+4.0 ± 1.0, +4.0 ± 1.0) | (+2.5 ± 0.7, +2.5 ± 0.7) [n=2] \
| (+5.0 ± 1.0, +5.0 ± 1.0) |
| DeepLabV3+ | wobbly | 2 | (+0.0 ± 1.4, +0.0 ± 1.4) | / | / | (−1.0 ± 0.0, −1.0 ± 0.0)† |
| PSPNet | CE | 1 | (+0.0, +0.0) | rule missing | rule missing | rule missing |"""

EXPECTED_TOY_HEAD = f"""# toyset

Generated by `scripts/make_tables.py` from the runs' `metrics.json` files; do not edit.

Cells: reproduced (mDice, mIoU) in %, the mean over the row's runs (Runs: runs whose stored config differs only \
by `seed`), ± the sample standard deviation (n − 1 denominator) when there are several; [n=k]: only k of them \
have the rule. Bold: the strictly best mDice of the row (none on a tie). '/' = not applicable: the rule needs \
calibrated probabilities and the run's loss is not strictly proper (`proper: false` in its stored config); † = \
evaluated anyway; 'rule missing' = no run of the row has this rule.

{EXPECTED_TOY_MAIN}

† Exact on a loss that is not strictly proper (wobbly): evaluated with `force_rankdice=true`. Its outputs are \
not calibrated probabilities, so this is outside the paper's protocol, where the cell is '/'.
"""


def test_toy_tables_exact_markdown(toy_runs):
    runs, published, out = toy_runs
    _load_script().main(["--runs", str(runs), "--out", str(out), "--published", str(published)])  # all datasets
    assert sorted(p.name for p in out.iterdir()) == [
        "toyset.csv",
        "toyset.md",
        "toyset_class_gains.png",
        "toyset_classes.csv",
        "toyset_classes.md",
        "toyset_gains.png",
    ]
    md = (out / "toyset.md").read_text(encoding="utf-8")
    assert _section(md, "") == EXPECTED_TOY_HEAD
    assert "\n".join(_table_lines(_section(md, "Dataset-level Dice and IoU"))) == EXPECTED_TOY_DATASET_LEVEL
    gains = _section(md, "Gain over Argmax")
    assert "\n".join(_table_lines(gains)) == EXPECTED_TOY_GAINS
    assert "![Gain over Argmax per model and loss](toyset_gains.png)" in gains
    assert "[toyset_classes.md](toyset_classes.md)" in gains
    assert md.endswith("![Per-class gain over Argmax](toyset_class_gains.png)\n")


def test_toy_per_class_tables(toy_runs):
    runs, published, out = toy_runs
    _load_script().main(["--runs", str(runs), "--out", str(out), "--published", str(published), "--no-plots"])
    assert not list(out.glob("*.png"))
    md = (out / "toyset_classes.md").read_text(encoding="utf-8")
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    rules = ["Threshold", "Argmax", "mRankDice", "RMA", "Exact"]
    assert headings == [
        *[f"Dice: {r}" for r in rules],
        *[f"IoU: {r}" for r in rules],
        *[f"Dice gain over Argmax: {r}" for r in rules if r != "Argmax"],
        *[f"IoU gain over Argmax: {r}" for r in rules if r != "Argmax"],
    ]
    # class a = mean + 5, b = mean - 5: Exact A a 41, 42, 46 -> 43.0 ± 2.6; B (forced) a 25, 25, b 15, 15
    assert _table_lines(_section(md, "Dice: Exact")) == [
        "| Model | Loss | Runs | a | b |",
        "|---|---|---|---|---|",
        "| DeepLabV3+ | CE | 3 | 43.0 ± 2.6 | 33.0 ± 2.6 |",
        "| DeepLabV3+ | wobbly | 2 | 25.0 ± 0.0† | 15.0 ± 0.0† |",
        "| PSPNet | CE | 1 | rule missing | rule missing |",
    ]
    # B's threshold IoU: a 15, 17 -> 16.0 ± 1.4; b 5 and none -> 5.0 from one run
    assert _table_lines(_section(md, "IoU: Threshold"))[3] == "| DeepLabV3+ | wobbly | 2 | 16.0 ± 1.4 | 5.0 [n=1] |"
    assert _table_lines(_section(md, "Dice gain over Argmax: mRankDice"))[2:] == [
        "| DeepLabV3+ | CE | 3 | +4.0 ± 1.0 | +4.0 ± 1.0 |",
        "| DeepLabV3+ | wobbly | 2 | / | / |",
        "| PSPNet | CE | 1 | rule missing | rule missing |",
    ]
    classes = pd.read_csv(out / "toyset_classes.csv")
    assert set(classes["class"]) == {"a", "b"}  # background is not a class of interest
    assert len(classes) == 3 * 5 * 2 * 2  # groups x rules x metrics x classes


def test_toy_csv_holds_the_pooled_numbers(toy_runs):
    runs, published, out = toy_runs
    _load_script().main(["--runs", str(runs), "--out", str(out), "--published", str(published), "--no-plots"])
    df = pd.read_csv(out / "toyset.csv", keep_default_na=False, na_values=[""])
    assert len(df) == 3 * 5
    row = df[(df.loss == "CE") & (df.model == "DeepLabV3+") & (df.rule == "rankdice")].iloc[0]
    assert (row.runs, row.n, row.delta_n) == (3, 3, 3)
    assert row.mdice == pytest.approx(37.0) and row.mdice_std == pytest.approx(7**0.5, abs=1e-4)
    assert row.delta_mdice == pytest.approx(4.0) and row.delta_mdice_std == pytest.approx(1.0)
    assert row.seeds == "0;1;2" and row.source.count("metrics.json") == 3
    status = df.set_index(["model", "loss", "rule"])
    assert status.loc[("DeepLabV3+", "wobbly", "rankdice"), "status"] == "not applicable"
    assert status.loc[("DeepLabV3+", "wobbly", "exact"), "forced"]
    assert not status.loc[("DeepLabV3+", "CE", "exact"), "forced"]
    assert status.loc[("PSPNet", "CE", "rma"), "status"] == "rule missing"


def test_toy_plots(toy_runs):
    runs, published, out = toy_runs
    _load_script().main(["--runs", str(runs), "--out", str(out), "--published", str(published)])
    config_runs = load_runs(runs)
    table = build_table("toyset", config_runs, load_published(published))
    classes = build_class_table("toyset", config_runs)

    fig = plot_gains(table, _config())
    panels = fig.axes[:2]
    assert len(fig.axes) == 2
    for ax in panels:
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        # one container per rule other than argmax; bars where there is a gain: threshold A B C, rankdice A,
        # rma A, exact A B
        assert [c.get_label() for c in bars] == ["Threshold", "mRankDice", "RMA", "Exact"]
        assert [len(c.patches) for c in bars] == [3, 1, 1, 2]
        assert sum(p.get_hatch() is not None for c in bars for p in c.patches) == 1  # forced exact on wobbly
        errs = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        # error bars where two or more runs have both rules: threshold A B, rankdice A, rma A, exact A B
        assert sum(len(c[2][0].get_segments()) for c in errs) == 6
    # 3 rows x 4 rules: max(6, 1.5 + 3 * (0.25 * 4 + 0.3)) = 6 in wide, 7 in high, at 100 dpi
    assert _png_size(out / "toyset_gains.png") == (600, 700)

    fig = plot_class_gains(classes, _config())
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2 * 4  # (Dice, IoU) x (threshold, rankdice, rma, exact)
    assert all(ax.images[0].get_array().shape == (3, 2) for ax in heatmaps)  # rows x classes of interest
    # 3.5 + 4 * (1 + 0.6 * 2) = 12.3 in wide, 1.2 + 2 * (0.8 + 0.3 * 3) = 4.6 in high
    assert _png_size(out / "toyset_class_gains.png") == (1230, 460)


def _config():
    from rankseg.experiments.tables import load_table_config

    return load_table_config()


def test_variants_get_their_own_rows(tmp_path):
    runs = tmp_path / "runs"
    for lr in (0.01, 0.02):
        for seed in (0, 1):
            rules = {"argmax": _simple(0.5 + lr, 0.4), "rankdice": _simple(0.5 + 2 * lr, 0.4)}
            _write_run(runs, "toyset", "deeplabv3plus", "ce", seed, rules, lr=lr)
    table = build_table("toyset", load_runs(runs), load_published(PUBLISHED))
    lines = _table_lines(render_markdown("toyset", table))
    assert lines[0] == "| Model | Loss | Variant | Runs | Argmax | mRankDice |"
    assert lines[2] == (
        "| DeepLabV3+ | CE | optimizer.lr=0.01 | 2 | (51.0 ± 0.0, 40.0 ± 0.0) | **(52.0 ± 0.0, 40.0 ± 0.0)** |"
    )
    assert lines[3].startswith("| DeepLabV3+ | CE | optimizer.lr=0.02 | 2 | (52.0 ± 0.0, ")


def test_calibrated_rules_sit_beside_their_rule(tmp_path):
    """``RULE@T`` (evaluate.py calibrate=temperature) follows RULE and inherits its title and properness."""
    runs = tmp_path / "runs"
    rules = {r: _simple(0.3, 0.2) for r in ("argmax@T", "rankdice", "argmax", "rankdice@T")}
    _write_run(runs, "toyset", "deeplabv3plus", "ce", 0, rules)
    _write_run(runs, "toyset", "pspnet", "wobbly", 0, {"argmax": _simple(0.3, 0.2), "argmax@T": _simple(0.3, 0.2)})
    lines = _table_lines(render_markdown("toyset", build_table("toyset", load_runs(runs), load_published(PUBLISHED))))
    assert lines[0] == "| Model | Loss | Runs | Argmax | Argmax@T | mRankDice | mRankDice@T |"
    assert lines[3] == "| PSPNet | wobbly | 1 | (30.0, 20.0) | (30.0, 20.0) | / | / |"


def test_strict_best_and_summary():
    assert strict_best([1.0, 2.0, 2.0]) is None  # tie for the top
    assert strict_best([0.0, 0.0, 0.0]) is None
    assert strict_best([float("nan"), 3.0]) is None  # one value: nothing to beat
    assert strict_best([1.0, float("nan"), 3.0, 2.0]) == 2
    stat = summarize([1.0, None, 3.0, float("nan"), 5.0])
    assert (stat.mean, stat.std, stat.n) == (3.0, 2.0, 3)  # sample std: sqrt((4 + 0 + 4) / 2)
    assert summarize([]).n == 0


# --- the published tables -----------------------------------------------------------------------------------


def _voc_rules(threshold, argmax, rankdice=None):
    rules = {"threshold": _record(*threshold), "argmax": _record(*argmax)}
    if rankdice:
        rules["rankdice"] = _record(*rankdice)
    return rules


@pytest.fixture()
def voc_dirs(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "voc2012", "deeplabv3plus", "ce", 0, _voc_rules((0.6312, 0.5671), (0.62, 0.553), (0.6449, 0.5712)))
    # Soft-Dice is not strictly proper: its rankdice was forced, so it is shown with a dagger (and may be bold)
    _write_run(runs, "voc2012", "deeplabv3plus", "soft_dice", 0, _voc_rules((0.41, 0.35), (0.4104, 0.3512), (0.5, 0.4)))
    # not in the published table; no rankdice in the run; a null mIoU
    _write_run(runs, "voc2012", "fcn8", "ce", 0, _voc_rules((0.5, None), (0.49, 0.41)))
    published = tmp_path / "published" / "published_tables.csv"
    published.parent.mkdir()
    published.write_text(FIXTURE_PUBLISHED)
    (published.parent / "known_typos.csv").write_text(FIXTURE_TYPOS)
    return runs, published, tmp_path / "tables"


EXPECTED_VOC = """# PASCAL VOC 2012 val (20 classes, background excluded)

Generated by `scripts/make_tables.py` from the runs' `metrics.json` files; do not edit.

Cells: reproduced (mDice, mIoU) in %, the mean over the row's runs (Runs: runs whose stored config differs only \
by `seed`), ± the sample standard deviation (n − 1 denominator) when there are several; [n=k]: only k of them \
have the rule. Bold: the strictly best mDice of the row (none on a tie). '/' = not applicable: the rule needs \
calibrated probabilities and the run's loss is not strictly proper (`proper: false` in its stored config); † = \
evaluated anyway; 'rule missing' = no run of the row has this rule. Then `pub` = the value published by Dai & Li \
(JMLR 2023) and Δ = reproduced (as displayed) minus published; published '-' = not trained in the paper; \
'no run' = no metrics.json for this model and loss.

Published BCE and BSoftDice mIoU equal mDice/2 (a metric bug in the reference code, paper_protocol §1), so \
their mIoU differences are not meaningful.

| Model | Loss | Runs | Threshold | Argmax | mRankDice |
|---|---|---|---|---|---|
| DeepLabV3+ | CE | 1 | (63.1, 56.7) · pub (63.6, 56.7) · Δ (−0.5, +0.0) | (62.0, 55.3) · pub (61.9, 55.3) · \
Δ (+0.1, +0.0) | **(64.5, 57.1)** · pub (64.01, 57.01)[1] · Δ (+0.5, +0.1) |
| DeepLabV3+ | SoftDice | 1 | (41.0, 35.0) · pub - | (41.0, 35.1) · pub - | **(50.0, 40.0)**† · pub / |
| PSPNet | CE | 0 | no run · pub (64.6, 57.1) | no run · pub (63.2, 55.9) | no run · pub (65.4, 57.8) |
| FCN8 | CE | 1 | **(50.0, n/a)** · not published | (49.0, 41.0) · not published | rule missing · not published |

† mRankDice on a loss that is not strictly proper (SoftDice): evaluated with `force_rankdice=true`. Its outputs \
are not calibrated probabilities, so this is outside the paper's protocol, where the cell is '/'.

- [1] DeepLabV3+ CE mRankDice mDice: the README prints 64.01, the logs say 64.1. Source: test.
"""


def test_published_beside_reproduced(voc_dirs):
    runs, published, out = voc_dirs
    script = _load_script()
    script.main(["--runs", str(runs), "--out", str(out), "--published", str(published), "--no-plots"])
    md = (out / "voc2012.md").read_text(encoding="utf-8")
    assert _section(md, "") == EXPECTED_VOC
    df = pd.read_csv(out / "voc2012.csv", dtype={"published_mdice": str, "published_miou": str})
    assert len(df) == 4 * 3
    row = df[(df.model == "DeepLabV3+") & (df.loss == "CE") & (df.rule == "rankdice")].iloc[0]
    assert row.mdice == pytest.approx(64.49) and row.published_mdice == "64.01"
    assert row.diff_mdice == pytest.approx(0.48)
    assert row.source.startswith("voc2012/deeplabv3plus/ce/resnet18-seed0-")
    statuses = df.set_index(["model", "loss", "rule"])["status"]
    assert statuses[("PSPNet", "CE", "argmax")] == "no run"
    assert statuses[("FCN8", "CE", "rankdice")] == "rule missing"
    # any dataset of the published table is accepted; names found nowhere are refused
    script.main(["--runs", str(runs), "--out", str(out), "--published", str(PUBLISHED), "--datasets", "kvasir_seg"])
    assert "| FCN8 | SoftDice | 0 | no run · pub - | no run · pub - | / |" in (out / "kvasir_seg.md").read_text()
    with pytest.raises(SystemExit):
        script.main(["--runs", str(runs), "--out", str(out), "--published", str(published), "--datasets", "nope"])


def test_runs_without_stored_config_are_not_pooled(voc_dirs):
    """An old metrics.json (no run_config) is its own row; loss metadata then comes from configs/loss."""
    runs, published, _ = voc_dirs
    for name in ("old_a", "old_b"):
        folder = runs / "legacy" / name
        folder.mkdir(parents=True)
        rules = {"argmax": _record(0.1, 0.1), "rankdice": _record(0.2, 0.1)}
        payload = {"dataset": "voc2012", "model": "pspnet", "loss": "soft_dice", "rules": rules}
        folder.joinpath("metrics.json").write_text(json.dumps(payload))
    table = build_table("voc2012", load_runs(runs), load_published(published))
    sel = table[(table.model == "PSPNet") & (table.loss == "SoftDice")]
    assert sorted(set(sel.variant)) == ["old_a", "old_b"]
    assert sel[sel.rule == "rankdice"].forced.all()


def test_published_csv_parses():
    df = load_published(PUBLISHED)
    assert list(df.columns) == ["dataset", "model", "loss", "rule", "mdice", "miou", "note"]
    assert len(df) == 132
    assert df.groupby("dataset").size().to_dict() == {"cityscapes": 54, "kvasir_seg": 24, "voc2012": 54}
    numeric = df[df.mdice != ""]
    assert numeric[["mdice", "miou"]].astype(float).stack().between(0, 100).all()
    assert set(df.loc[df.mdice == "", "note"].str[0]) <= {"/", "-"}
    assert not df.duplicated(["dataset", "model", "loss", "rule"]).any()
    # the published file is a verbatim copy of the reference transcription
    reference = Path("/work/shared/reference/published_tables.csv")
    if reference.exists():
        assert PUBLISHED.read_bytes() == reference.read_bytes()


def test_full_published_grid_renders_without_runs():
    table = build_table("kvasir_seg", [], load_published(PUBLISHED))
    md = render_markdown("kvasir_seg", table)
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Model")]
    assert len(rows) == 12
    assert (
        "| DeepLabV3+ | CE | 0 | no run · pub (87.9, 80.7) | no run · pub (87.9, 80.7) "
        "| no run · pub (88.3, 80.9) |" in md
    )
    # Soft-Dice has no run: 'not applicable' comes from configs/loss/soft_dice.yaml (proper: false)
    assert "| FCN8 | SoftDice | 0 | no run · pub - | no run · pub - | / |" in md
    assert "## " not in md  # no runs: no dataset-level or gains tables


def test_records_are_not_modified(toy_runs):
    runs, published, _ = toy_runs
    loaded = load_runs(runs)
    before = copy.deepcopy([r.data for r in loaded])
    build_table("toyset", loaded, load_published(published))
    build_class_table("toyset", loaded)
    assert [r.data for r in loaded] == before


def test_published_networks_show_the_published_cells_in_the_tester_columns(tmp_path):
    """A run of the authors' own PSPNet (model ref_pspnet) is compared with the published PSPNet cells in the
    reference tester's columns (and argmax); our rules on it get no published value."""
    runs = tmp_path / "runs"
    rules = _voc_rules((0.646, 0.571), (0.632, 0.559))
    rules["threshold_reference"] = _record(0.6462, 0.5712)
    rules["rankdice_reference"] = _record(0.654, 0.578)
    _write_run(runs, "voc2012", "ref_pspnet", "ce", 0, rules)
    published = tmp_path / "published.csv"
    published.write_text(FIXTURE_PUBLISHED)
    table = build_table("voc2012", load_runs(runs), load_published(published))
    mine = table[table.model_key == "ref_pspnet"].set_index("rule")
    assert set(mine.model) == {"PSPNet (published network)"}
    assert mine.loc["threshold_reference", "published_mdice"] == "64.6"  # FIXTURE_PUBLISHED's PSPNet CE threshold
    assert mine.loc["argmax", "published_miou"] == "55.9"
    assert mine.loc["rankdice_reference", "published_mdice"] == "65.4"
    assert mine.loc["threshold", "published_mdice"] == ""  # ours (prob > 0.5) is not what was published
    assert mine.loc["rankdice_reference", "diff_mdice"] == pytest.approx(65.4 - 65.4)
    assert mine.loc["threshold_reference", "diff_miou"] == pytest.approx(57.12 - 57.1)
