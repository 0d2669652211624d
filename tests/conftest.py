"""Shared test setup: offline, quiet, two CPU threads, and a Hydra compose helper for the configs."""

from __future__ import annotations

import os

# Set before anything imports wandb, huggingface_hub or albumentations: tests never touch the network.
os.environ["WANDB_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

if not torch.cuda.is_available():
    # The Triton kernels are tested on the CPU under Triton's interpreter, which must be chosen before anything
    # imports triton (smp/timm do, so a test module setting it at its own import would be too late).
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


def compose_config(config_name: str, overrides: Sequence[str] = ()):
    """Compose ``configs/<config_name>.yaml`` with Hydra's compose API (no run directory, no chdir)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Some code under test sets torch's thread count (scripts/simulations.py: 1); later tests, e.g. the bitwise
    resume tests that compare an in-process run with a subprocess, need the suite's 2 threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def compose() -> Callable:
    """The :func:`compose_config` helper as a fixture."""
    return compose_config


def smoke_overrides(root: Path, num_val: int = 8) -> list[str]:
    """A tiny CPU setup under ``root``: 16 train / ``num_val`` val synthetic images of 32x32, batches of 4."""
    return [
        "dataset=synthetic",
        f"paths.data_dir={root / 'data'}",
        f"paths.checkpoint_dir={root / 'checkpoints'}",
        f"paths.results_dir={root / 'results'}",
        f"paths.output_dir={root / 'outputs'}",
        "dataset.num_train=16",
        f"dataset.num_val={num_val}",
        "dataset.image_size=32",
        "dataset.crop_size=32",
        "dataset.train_crop_size=32",
        "dataset.batch_size=4",
        "dataset.eval_batch_size=4",
        "dataset.epochs=2",
        "model.encoder_name=mobilenet_v2",
        "device=cpu",
    ]
