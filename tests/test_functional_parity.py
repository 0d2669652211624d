"""Pinned parity with rankseg 0.0.8: every recorded call of its solver surface, replayed on ours.

The outcomes (results, warnings, exceptions) were recorded from the real wheel by
``python scripts/parity/harness.py --official .whl/official --record``; ``make parity`` runs the random
comparison over the whole surface. This test needs no wheel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "parity"))
import functional_cases as cases  # noqa: E402

RECORDED = torch.load(ROOT / "tests" / "parity_data" / "functional_0.0.8.pt", weights_only=True)
CASES = [(json.loads(c["spec"]), c["official"]) for c in RECORDED["cases"]]


def test_recording_is_the_pinned_set():
    assert RECORDED["rankseg"] == "0.0.8"
    assert [spec for spec, _ in CASES] == cases.pinned(), "re-record: " + RECORDED["command"]


@pytest.mark.parametrize("spec,official", CASES, ids=[cases.reproducer(s)[:90] for s, _ in CASES])
def test_pinned_call_matches_0_0_8(spec, official):
    ours = cases.run(spec, promote=False)
    verdict, why = cases.compare(spec, ours, official)
    assert verdict != "differs", why
    if verdict == "intended":  # the only intended kinds in the pinned set
        assert "exact" in why


def test_pinned_set_reaches_every_entry_point_and_message():
    import rankseg.functional

    reached = {spec["fn"] for spec, _ in CASES}
    assert reached == set(cases.FUNCTIONS)
    assert set(rankseg.functional.__all__) <= {fn.split(".")[1] for fn in reached if fn.startswith("functional.")} | {
        "rankseg"
    }
    messages = {o["message"] for _, o in CASES if o["kind"] == "error"}
    # every message template of 0.0.8's solver surface (rankseg_api.md, section 1.2-1.3)
    templates = [
        "probs must be a torch.Tensor", "probs must have a real floating-point dtype",
        "probs must have shape (batch_size, num_class, *image_shape)", "probs must contain at least one class",
        "probs spatial dimensions must be non-empty", "probs must contain only finite values",
        "probs must be in the range [0, 1]", "metric must be a string", "output_mode must be a string",
        "solver must be a string", "smooth must be a real number", "pruning_prob must be a real number",
        "eps must be a real number", "smooth must be finite", "pruning_prob must be finite", "eps must be finite",
        "smooth must be greater than or equal to 0", "pruning_prob must be in the range [0, 1]",
        "eps must be in the range (0, 1)", "Unknown metric: f1", "Unknown output mode: binary",
        "Single-channel probabilities cannot produce", "Exact solver is not implemented yet",
        "is not supported for metric=", "does not accept solver parameters", "allowed parameters:",
        "void_index requires unassigned_policy='void'", "unassigned_policy should be max_score or void",
        "void_index must lie outside the valid class index range", "void_index must be an int",
        "void_index must be representable as torch.int64", "safe_screening must be a bool or 'auto'",
        "metric should be iou or dice", "output_mode should be multiclass or multilabel",
        "unassigned_policy='void' is only supported when output_mode='multiclass'",
        "a non-default void_index requires", "unassigned_policy must be a string", "Unknown solver: EXACT",
    ]  # fmt: skip
    missing = [t for t in templates if not any(t in m for m in messages)]
    assert not missing
    warned = {w[1] for _, o in CASES for w in o["warnings"]}
    assert any("argmax solver returns non-overlapping one-hot masks" in w for w in warned)
