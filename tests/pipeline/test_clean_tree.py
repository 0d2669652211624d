"""Documented commands never touch tracked files, and a seed sweep gives one run and one result per seed.

The working tree is copied into a fresh git repository (tracked and untracked-but-not-ignored files, committed
there), and the README's commands run in it as real processes, on the tiny synthetic setup: the seed sweep
``train.py -m seed=0,1,2`` then ``evaluate.py -m seed=0,1,2``, the table renderer with its defaults, and the demo
(``make demo``'s script) with a budget of a second. Afterwards ``git status`` must be clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import smoke_overrides

REPO_ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A committed copy of the working tree (what a fresh clone of this change would hold)."""
    root = tmp_path_factory.mktemp("clean") / "repo"
    files = git(REPO_ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "snapshot")
    return root


def run(clone: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, *command], cwd=clone, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def tiny(clone: Path) -> list[str]:
    """The tests' tiny setup, but with the default (repository-relative) paths of a user's run."""
    keep = [o for o in smoke_overrides(clone) if not o.startswith("paths.")]
    return [o for o in keep if o != "device=cpu"] + ["device=cpu"]


def test_seed_sweep_and_documented_commands_leave_git_status_clean(clone):
    run(clone, "train.py", "-m", "seed=0,1,2", *tiny(clone), "logger=none", "max_iters=1")
    run(clone, "evaluate.py", "-m", "seed=0,1,2", *tiny(clone), "predict=[argmax,rankdice]")
    runs = sorted((clone / "checkpoints/synthetic/deeplabv3plus/ce").glob("*/last.pt"))
    results = sorted((clone / "results/runs/synthetic/deeplabv3plus/ce").glob("*/metrics.json"))
    assert [p.parent.name.split("-")[1] for p in runs] == ["seed0", "seed1", "seed2"]
    assert [p.parent.name for p in results] == [p.parent.name for p in runs]
    metrics = [json.loads(p.read_text()) for p in results]
    assert [m["run_config"]["seed"] for m in metrics] == [0, 1, 2]
    assert len({m["weights_sha256"] for m in metrics}) == 3
    assert all(list(m["rules"]) == ["argmax", "rankdice"] for m in metrics)

    run(clone, "scripts/make_tables.py")
    run(clone, "scripts/demo.py", "--minutes", "0.02")
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
