"""Replay rankseg 0.0.8's recorded ``rankseg.distribution`` outcomes on ours (no wheel needed at test time).

The data, ``tests/parity_data/distribution_0.0.8.json``, holds each pinned call of
``scripts/parity/distribution_cases.py`` with 0.0.8's value (or exception type and message) and warnings; refresh it
with ``python scripts/parity/record_distribution.py --official /tmp/official``. Every call must give the same outcome
here, or one of the documented intended differences. The coverage tests check that the pinned calls reach every
public name of 0.0.8's module, classes and frozen distributions, and every error message 0.0.8's code raises.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("distribution_cases", ROOT / "scripts/parity/distribution_cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

DATA = json.loads((ROOT / "tests/parity_data/distribution_0.0.8.json").read_text())
CASES = DATA["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c['spec']['fn']}" for i, c in enumerate(CASES)])
def test_recorded_call(case):
    spec = case["spec"]
    verdict, why = cases.compare(spec, cases.run(spec), case["official"])
    assert verdict in ("same", "intended"), why
    if verdict == "intended":
        assert why in cases.INTENDED.values()


def _official(fn: str, **match) -> list[dict]:
    found = [c for c in CASES if c["spec"]["fn"] == fn and all(c["spec"].get(k) == v for k, v in match.items())]
    return [c["official"] for c in found]


def _names(outcome: dict) -> set[str]:
    return {item["data"] for item in outcome["value"]["items"]}


def test_pinned_calls_reach_every_public_name():
    called = {c["spec"]["fn"] for c in CASES}
    frozen = {c["spec"]["then"] for c in CASES if "then" in c["spec"]}
    (module,) = _official("module")
    assert _names(module) == {
        "Real", "Optional", "Union", "np", "scipy", "torch", "Tensor", "Distribution", "constraints", "Normal",
        "broadcast_all", "SUPPORTED_PROB_DTYPES", "validate_finite_real", "validate_integral", "RefinedNormalPB",
        "RefinedNormal",
    }  # fmt: skip
    for name in ("SUPPORTED_PROB_DTYPES", "validate_finite_real", "validate_integral", "RefinedNormalPB",
                 "RefinedNormal"):  # fmt: skip
        assert name in called
    # The imported helpers (Real, np, Normal, ...) are other libraries' objects; module parity covers their presence.
    (pb_members,) = _official("members", of="RefinedNormalPB")
    assert _names(pb_members) - {m.partition(".")[2] for m in called if m.startswith("RefinedNormalPB.")} == set()
    (rn_members,) = _official("members", of="RefinedNormal")
    rn_called = {m.partition(".")[2] for m in called if m.startswith("RefinedNormal.")}
    assert _names(rn_members) - rn_called == set()
    (frozen_members,) = _official("members", of="frozen")
    assert _names(frozen_members) - frozen == set()
    assert {"freeze", "__call__"} <= rn_called


# Every message 0.0.8's distribution code raises (its own checks and the validators it imports), and those of the
# SciPy machinery behind RefinedNormal that a caller can reach.
MESSAGES_OF_0_0_8 = [
    "dim must contain real numbers", "loc must contain real numbers", "scale must contain real numbers",
    "skew must contain real numbers", "loc must contain only finite values", "scale must contain only finite values",
    "skew must contain only finite values", "p must contain real numbers", "p must not be empty",
    "p must contain only finite values", "p must be in the range [0, 1]", "p must be a torch.Tensor",
    "p must have a real floating-point dtype", "p must be in the range (0, 1)", "max_iter must be an int",
    "max_iter must be greater than 0", "tol must be a real number", "tol must be finite", "tol must be greater than 0",
]  # fmt: skip
MESSAGES_OF_SCIPY = [
    "alpha must be between 0 and 1 inclusive", "The function value at x=100.0 is NaN; solver cannot continue.",
    "xtol too small (0 <= 0)", "_parse_args() missing 1 required positional argument: 'skew'",
    "_parse_args() got an unexpected keyword argument 'foo'", "shapes must be a string.",
    "keywords cannot be used as shapes.", "shapes must be valid python identifiers",
    "'bad' cannot be used to seed a numpy.random.RandomState instance",
]  # fmt: skip


def test_pinned_calls_raise_every_error_message():
    raised = {c["official"]["message"] for c in CASES if c["official"]["kind"] == "error"}
    assert [m for m in MESSAGES_OF_0_0_8 + MESSAGES_OF_SCIPY if m not in raised] == []
    prefixes = ("Expected parameter dim", "Expected parameter loc", "Expected parameter scale",
                "Expected parameter skew", "Expected value argument", "Domain error in arguments",
                "size does not match the broadcast shape")  # fmt: skip
    assert [p for p in prefixes if not any(m.startswith(p) for m in raised)] == []


def test_recorded_values_are_not_trivial():
    kinds = [c["official"]["kind"] for c in CASES]
    assert kinds.count("value") > 150 and kinds.count("error") > 100
