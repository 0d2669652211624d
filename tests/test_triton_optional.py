"""The library imports and solves without triton: the kernels are optional (rankseg/_triton imports it lazily)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.modules["triton"] = None  # import triton now fails
import torch
from rankseg import _triton
from rankseg.functional import rankseg
probs = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).softmax(1)
with _triton.forced():
    assert not _triton.available() and not _triton.enabled(probs)
    labels = rankseg(probs, metric="dice", output_mode="multiclass", solver="RMA")
assert labels.shape == (2, 16, 16)
print("ok")
"""


def test_solvers_run_when_triton_does_not_import():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
