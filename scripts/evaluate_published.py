"""Evaluate the JMLR authors' published networks with evaluate.py: one command per checkpoint.

    python scripts/evaluate_published.py /data/published/cityscapes --dataset-root /data/cityscapes         # list
    python scripts/evaluate_published.py /data/published/cityscapes --dataset-root /data/cityscapes --run   # run

Finds every ``checkpoint-epoch{E}.pth`` below FOLDER (``--epoch``, default 300: the networks behind the published
tables), reads the run's ``config.json`` beside it (or, when there is none, the config stored in the checkpoint,
read as data), maps its architecture, loader and loss onto this project's configs
(:mod:`rankseg.engine.reference_ckpt`) and prints, or runs one after the other, ::

    python evaluate.py experiment=published_networks dataset=D model=ref_M loss=L dataset.root=... ckpt_path=...

``experiment=published_networks`` holds the reference tester's protocol (its rules, ignore pixels counted as
background). Results go to ``results/runs/{dataset}/ref_*/{loss}/reference-epoch{E}-{hash}/metrics.json``;
``python scripts/make_tables.py`` then renders them beside the published numbers. Extra arguments after ``--``
are passed to every evaluate.py command (e.g. ``-- device=cuda``). Exit status 2: nothing found, or a
checkpoint whose config names something this project cannot rebuild (all such files are listed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rankseg.engine.checkpoint import CheckpointError, read_checkpoint_file  # noqa: E402
from rankseg.engine.reference_ckpt import reference_overrides  # noqa: E402

_FIX = "Check that the folder holds the published networks (README: Evaluate the published networks)"


def _config_of(path: Path) -> dict[str, Any]:
    beside = path.parent / "config.json"
    if beside.is_file():
        try:
            config = json.loads(beside.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{beside} is not valid JSON: {err}") from None
    else:
        config = read_checkpoint_file(path, "cpu", _FIX)
        config = config.get("config") if isinstance(config, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: no config.json beside it and no config inside it. {_FIX}")
    return config


def commands(folder: Path, epoch: int, dataset_root: str | None, extra: list[str]) -> tuple[list[list[str]], list[str]]:
    """(one evaluate.py argument list per checkpoint, one problem line per checkpoint that cannot be mapped)."""
    found = sorted(folder.rglob(f"checkpoint-epoch{epoch}.pth"))
    out, problems = [], []
    for path in found:
        try:
            args = ["experiment=published_networks", *reference_overrides(path, _config_of(path), _FIX)]
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if dataset_root:
            args.append(f"dataset.root={dataset_root}")
        out.append([*args, f"ckpt_path={path}", *extra])
    return out, problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a downloaded folder of published networks")
    parser.add_argument("--dataset-root", help="dataset.root= of the matching dataset")
    parser.add_argument("--epoch", type=int, default=300, help="which checkpoint of each run (default 300)")
    parser.add_argument("--run", action="store_true", help="run the commands (default: print them)")
    args = parser.parse_args(argv)
    todo, problems = commands(args.folder, args.epoch, args.dataset_root, extra)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if not todo:
        print(f"error: no usable checkpoint-epoch{args.epoch}.pth below {args.folder}", file=sys.stderr)
        return 2
    failed = 0
    for i, cmd in enumerate(todo, 1):
        line = " ".join(shlex.quote(a) for a in ["python", "evaluate.py", *cmd])
        print(f"[{i}/{len(todo)}] {line}" if args.run else line, flush=True)
        if args.run:
            failed += subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *cmd], cwd=ROOT).returncode != 0
    if failed:
        print(f"error: {failed} of {len(todo)} evaluations failed (their messages are above)", file=sys.stderr)
    return 2 if problems or failed else 0


if __name__ == "__main__":
    sys.exit(main())
