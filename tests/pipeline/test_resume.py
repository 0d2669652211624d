"""Exact resume: a run stopped at any iteration (max_iters, SIGTERM, SIGINT, SIGKILL after a periodic checkpoint)
and resumed ends with weights, optimizer and schedule bitwise equal to an uninterrupted run; and the signal
protocol (save, message, exit status 128 + N, hand-over to a previous handler such as submitit's).

Same tiny setup as test_train_evaluate (16 train images of 32x32, batch 4: 4 iterations per epoch, 2 epochs), with
DeepLabV3+ (its ASPP has dropout, so the torch RNG matters) and the training augmentation (rotation, crop, flip).
The loss is ``faults.SignalAtCall`` (tests/faults.py): cross-entropy that can signal its own process mid-step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import smoke_overrides

from rankseg.engine import TrainingInterrupted
from rankseg.engine.checkpoint import load_checkpoint
from rankseg.engine.runs import run_identity, run_key
from rankseg.engine.train import run_training

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
FAULTY_LOSS = ["loss._target_=faults.SignalAtCall", "logger=none"]


def overrides(root: Path, checkpoints: str) -> list[str]:
    """The tiny run with its checkpoints under ``root/checkpoints``; every variant below is the same run."""
    return [*smoke_overrides(root), *FAULTY_LOSS, f"paths.checkpoint_dir={root / checkpoints}"]


def checkpoint_of(compose, root: Path, checkpoints: str) -> Path:
    return root / checkpoints / run_key(run_identity(compose("train", overrides(root, checkpoints)))) / "last.pt"


def assert_same_state(a: dict, b: dict) -> None:
    """Weights and optimizer state equal bit for bit, schedule and counters equal."""
    assert a["iteration"] == b["iteration"] and a["finished"] and b["finished"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][index]["momentum_buffer"]), index
    assert a["scheduler"] == b["scheduler"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, compose):
    """The uninterrupted run (8 iterations in one invocation)."""
    root = tmp_path_factory.mktemp("resume")
    summary = run_training(compose("train", overrides(root, "reference")))
    assert summary["start_iteration"] == 0 and summary["iteration"] == 8
    return root, load_checkpoint(summary["checkpoint"])


@pytest.mark.parametrize("stop_at", [3, 4])  # mid-epoch, and exactly at the epoch boundary
def test_max_iters_then_resume_is_bitwise_equal(reference, compose, stop_at):
    root, expected = reference
    name = f"max_iters_{stop_at}"
    first = run_training(compose("train", [*overrides(root, name), f"max_iters={stop_at}"]))
    assert first["iteration"] == stop_at and first["stopped"] == "max_iters"
    second = run_training(compose("train", overrides(root, name)))
    assert second["start_iteration"] == stop_at and second["iteration"] == 8
    assert_same_state(load_checkpoint(second["checkpoint"]), expected)


def test_resume_with_dataloader_workers_is_bitwise_equal(reference, compose):
    """Augmentations are seeded per sample: workers (and their number) change nothing."""
    root, expected = reference
    workers = ["dataset.num_workers=2"]
    run_training(compose("train", [*overrides(root, "workers"), *workers, "max_iters=5"]))
    summary = run_training(compose("train", [*overrides(root, "workers"), *workers]))
    assert summary["start_iteration"] == 5
    assert_same_state(load_checkpoint(summary["checkpoint"]), expected)


def test_sigterm_finishes_the_step_saves_and_resumes_exactly(reference, compose, monkeypatch, capsys):
    root, expected = reference
    monkeypatch.setenv("RANKSEG_FAULT_SIGNAL", "TERM")
    monkeypatch.setenv("RANKSEG_FAULT_AT", "6")  # during iteration 6 (epoch 1)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as stop:
        run_training(compose("train", overrides(root, "sigterm")))
    assert stop.value.signum == signal.SIGTERM and stop.value.exit_status == 143
    ckpt = checkpoint_of(compose, root, "sigterm")
    state = load_checkpoint(ckpt)
    assert state["iteration"] == 6 and state["reason"] == "SIGTERM"  # the step in flight was completed
    printed = capsys.readouterr().out
    assert f"stopped by SIGTERM after iteration 6/8; checkpoint saved to {ckpt}" in printed
    assert "Run the same command again to resume" in printed
    assert signal.getsignal(signal.SIGTERM) == handler_before  # handlers restored
    monkeypatch.delenv("RANKSEG_FAULT_SIGNAL")
    summary = run_training(compose("train", overrides(root, "sigterm")))
    assert summary["start_iteration"] == 6
    assert_same_state(load_checkpoint(summary["checkpoint"]), expected)


def test_preemption_signal_is_handed_to_the_previous_handler_after_saving(reference, compose, monkeypatch):
    """Under submitit, SIGUSR2's handler requeues the job: it must run, after our checkpoint is on disk."""
    root, _ = reference
    seen = []

    def previous(signum, frame):
        seen.append((signum, load_checkpoint(checkpoint_of(compose, root, "usr2"))["iteration"]))

    old = signal.signal(signal.SIGUSR2, previous)
    try:
        monkeypatch.setenv("RANKSEG_FAULT_SIGNAL", "USR2")
        monkeypatch.setenv("RANKSEG_FAULT_AT", "2")
        with pytest.raises(TrainingInterrupted) as stop:
            run_training(compose("train", overrides(root, "usr2")))
        assert stop.value.exit_status == 128 + signal.SIGUSR2
        assert seen == [(signal.SIGUSR2, 2)]
        assert signal.getsignal(signal.SIGUSR2) is previous
    finally:
        signal.signal(signal.SIGUSR2, old)


def train_process(root: Path, checkpoints: str, extra: list[str], fault: str, at: int) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # CPU sums depend on the thread count
        "RANKSEG_FAULT_SIGNAL": fault,
        "RANKSEG_FAULT_AT": str(at),
    }
    command = [
        sys.executable, str(REPO_ROOT / "train.py"), *overrides(root, checkpoints), *extra,
        f"hydra.run.dir={root / 'hydra' / checkpoints}",
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_sigint_entrypoint_exits_130_and_resumes_exactly(reference, compose):
    root, expected = reference
    proc = train_process(root, "sigint", [], "INT", 3)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "stopped by SIGINT after iteration 3/8" in proc.stdout and "Traceback" not in proc.stderr
    assert load_checkpoint(checkpoint_of(compose, root, "sigint"))["iteration"] == 3
    summary = run_training(compose("train", overrides(root, "sigint")))
    assert summary["start_iteration"] == 3
    assert_same_state(load_checkpoint(summary["checkpoint"]), expected)


def test_sigkill_after_periodic_checkpoint_resumes_exactly(reference, compose):
    root, expected = reference
    proc = train_process(root, "sigkill", ["save_every_iters=2"], "KILL", 7)
    assert proc.returncode == -signal.SIGKILL
    ckpt = checkpoint_of(compose, root, "sigkill")
    assert load_checkpoint(ckpt)["iteration"] == 6  # the last periodic checkpoint before the kill
    assert not list(ckpt.parent.glob("*.tmp"))
    summary = run_training(compose("train", [*overrides(root, "sigkill"), "save_every_iters=2"]))
    assert summary["start_iteration"] == 6
    assert_same_state(load_checkpoint(summary["checkpoint"]), expected)


class RequeueableJob:
    """Stands for hydra-submitit-launcher's job object: its ``checkpoint`` resubmits the job itself."""

    def __call__(self, *args: object) -> None:
        pass

    def checkpoint(self, *args: object, **kwargs: object):
        from submitit.core.utils import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def test_submitit_requeues_the_job_after_the_checkpoint_is_saved(reference, compose, monkeypatch, tmp_path):
    """submitit's own preemption handler (as installed in a SLURM job) runs after our save and requeues."""
    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission

    root, _ = reference
    ckpt = checkpoint_of(compose, root, "submitit")
    requeued = []

    class Environment:  # the SLURM job environment: global rank and `scontrol requeue`
        global_rank = 0

        def _requeue(self, countdown: int) -> None:
            requeued.append((countdown, load_checkpoint(ckpt)["iteration"]))

    class JobPaths:
        submitted_pickle = tmp_path / "submitted.pkl"

    delayed = DelayedSubmission(RequeueableJob(), "overrides")
    delayed.set_timeout(60, 3)  # timeout_min, max_num_timeout
    handler = SignalHandler(Environment(), JobPaths(), delayed)
    old = signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
    try:
        monkeypatch.setenv("RANKSEG_FAULT_SIGNAL", "USR2")
        monkeypatch.setenv("RANKSEG_FAULT_AT", "3")
        with pytest.raises(SystemExit):  # submitit exits the job after requeueing it
            run_training(compose("train", overrides(root, "submitit")))
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert requeued == [(3, 3)]  # preempted, not timed out: the countdown is kept; iteration 3 was on disk
    assert JobPaths.submitted_pickle.is_file()
