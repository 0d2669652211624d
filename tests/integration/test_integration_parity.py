"""Replay of rankseg 0.0.8's recorded ``rankseg.integration`` outcomes on our package (no wheel needed).

``tests/parity_data/integration_0.0.8.pt`` is written by ``scripts/parity/record_integration.py``: the pinned
specs (every public function, class and method, every error message), the outputs of tiny real Hugging Face
models, and drawn specs, each with 0.0.8's outcome (value, or exception type and message, and warnings).
"""

from __future__ import annotations

import collections
import inspect
import re
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "parity"))

import integration_cases as ic  # noqa: E402
import record_integration  # noqa: E402

SPECS, OUTCOMES, META = record_integration.load(REPO / "tests" / "parity_data" / "integration_0.0.8.pt")
INTENDED = {"solver='exact' is implemented here; 0.0.8 refuses it"}


def test_recording_is_small_and_from_0_0_8():
    path = REPO / "tests" / "parity_data" / "integration_0.0.8.pt"
    assert path.stat().st_size < 500_000
    assert META["rankseg"] == "0.0.8" and len(SPECS) == len(OUTCOMES) > 500


def test_replay_matches_0_0_8():
    """Every recorded call: same value (dtype, shape, device, requires_grad, elements), same exception type and
    message, same warnings; the only accepted difference is solver='exact', which 0.0.8 refuses."""
    verdicts: collections.Counter = collections.Counter()
    failures = []
    torch.set_num_threads(1)  # as recorded
    for i, (spec, official) in enumerate(zip(SPECS, OUTCOMES)):
        verdict, why = ic.compare(spec, ic.run(spec), official)
        verdicts[verdict] += 1
        if verdict == "differs" or (verdict == "intended" and why not in INTENDED):
            failures.append(f"case {i} ({spec['fn']}): {why}")
    assert not failures, "\n".join(failures[:20])
    assert verdicts["same"] >= len(SPECS) - 20


def test_recording_covers_every_entry_point_and_message():
    fns = collections.Counter(spec["fn"] for spec in SPECS)
    assert set(fns) == set(ic.FUNCTIONS)
    valued = {spec["fn"] for spec, out in zip(SPECS, OUTCOMES) if out["kind"] == "value"}
    assert valued == set(ic.FUNCTIONS)  # every entry point also returned something
    real = {spec["fn"] for spec in SPECS if spec.get("source") == "real model"}
    assert {"transformers.postprocess", "sam.Sam1.postprocess", "sam.Sam2.postprocess", "sam.Sam3.postprocess_instance",
            "sam.Sam3.postprocess_semantic"} <= real  # fmt: skip
    messages = {out["message"] for out in OUTCOMES if out["kind"] == "error"}
    missing = [t for t in _message_templates() if not any(re.match(t, m) for m in messages)]
    assert not missing, missing
    assert any(out["warnings"] for out in OUTCOMES)  # argmax multilabel warning, passed through


def _message_templates() -> list[str]:
    """Regexes of every message literal in our integration modules (f-string fields as wildcards)."""
    from rankseg.integration import _common, sam, transformers

    sources = "".join(inspect.getsource(m) for m in (transformers, sam, _common))
    literals = [
        "".join(re.findall(r'f?"([^"]*)"', lit)) for lit in re.findall(r'raise \w+\(\s*((?:f?"[^"]*"\s*)+)', sources)
    ]
    literals += [transformers._TARGET_SIZES_ERROR, transformers._SAM_MESSAGE, transformers._EOMT_MESSAGE,
                 _common.TUPLE_OUTPUTS_MESSAGE, sam._SIZE_ERROR]  # fmt: skip
    return sorted({"^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(lit)) + "$" for lit in literals if lit})


@pytest.mark.parametrize("fn", ["transformers.postprocess", "sam.Sam1.postprocess", "sam.Sam3.postprocess_instance"])
def test_postprocess_results_are_detached(fn):
    for spec, out in zip(SPECS, OUTCOMES):
        if spec["fn"] == fn and out["kind"] == "value":
            assert out["grad"] == [False] * len(out["grad"])
