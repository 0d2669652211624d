"""Progress and messages for non-interactive logs (rankseg.engine.console)."""

from __future__ import annotations

import logging

from rankseg.engine.console import RUN_LOG, PlainProgress, echo, progress


def test_plain_progress_writes_whole_lines_with_counts_and_postfix(capsys):
    bar = PlainProgress(range(4), total=4, desc="evaluate x", interval=0.0, unit="batch")
    for _ in bar:
        bar.set_postfix({"mDice[argmax]": 0.5})
    lines = capsys.readouterr().out.splitlines()
    assert "\r" not in "".join(lines)
    # one line per step (interval 0) plus the final one
    assert len(lines) == 5
    assert lines[0].startswith("evaluate x: 1/4 (25%) after ")
    assert lines[-1].startswith("evaluate x: 4/4 (100%) done in ") and lines[-1].endswith("mDice[argmax]=0.5")


def test_plain_progress_is_quiet_when_disabled(capsys):
    quiet = PlainProgress(total=3, desc="rank 1", interval=0.0, disable=True)
    quiet.update(3)
    quiet.close()
    assert capsys.readouterr().out == ""


def test_only_the_final_line_within_the_interval(capsys):
    bar = PlainProgress(total=10, initial=4, desc="train", interval=3600)
    bar.update(3)
    bar.close()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("train: 7/10 (70%) done in ")


def test_progress_is_plain_when_stderr_is_not_a_terminal(capsys):
    # pytest captures stderr, so it is not a terminal here
    assert isinstance(progress(range(2), desc="x"), PlainProgress)


def test_echo_prints_and_writes_the_run_log(tmp_path, capsys):
    handler = logging.FileHandler(tmp_path / "evaluate.log")
    RUN_LOG.addHandler(handler)
    RUN_LOG.setLevel(logging.INFO)
    try:
        echo("wrote metrics.json")
        echo("warning: something", err=True)
    finally:
        RUN_LOG.removeHandler(handler)
        handler.close()
    captured = capsys.readouterr()
    assert captured.out == "wrote metrics.json\n" and captured.err == "warning: something\n"
    assert (tmp_path / "evaluate.log").read_text().splitlines() == ["wrote metrics.json", "warning: something"]
