"""``rankseg.reference_rankdice`` against the JMLR authors' own ``rank_dice`` (PS/rankdice.py, tester defaults).

The expectations in ``tests/parity_data/reference_rankdice.pt`` were produced by running the reference code itself
(``scripts/parity/record_reference_rankdice.py``, whose docstring gives the command and commit); the masks must
agree bit for bit, and where the reference raises, ``strict=True`` must raise and ``strict=False`` must fall back
with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from rankseg.predict import ReferenceRankDiceRule, ThresholdRule
from rankseg.reference_rankdice import reference_rankdice

DATA = Path(__file__).resolve().parent / "parity_data" / "reference_rankdice.pt"
RECORDED = torch.load(DATA, weights_only=True)
CASES = {case["name"]: case for case in RECORDED["cases"]}
SOLVED = sorted(name for name, case in CASES.items() if not case["raises"])
RAISING = sorted(name for name, case in CASES.items() if case["raises"])


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of the recording script's ``pack_bits`` (8 elements a byte, little bit order)."""
    bits = (packed.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8)) & 1
    return bits.flatten()[: shape.numel()].bool().view(shape)


def test_recording_covers_the_reference_paths():
    assert RECORDED["reference"].startswith("statmlben/rankseg@9547cf9")
    assert len(SOLVED) >= 10 and set(RAISING) == {
        "raises_past_last_pixel", "raises_nan_point", "raises_zero_variance"
    }  # fmt: skip
    mu = {name: (CASES[name]["probs"].flatten(2) >= 0.5).sum(-1) for name in SOLVED}
    assert any(((m > 0) & (m <= 50)).any() for m in mu.values()), "T-RNA rows"
    assert any((m > 50).any() for m in mu.values()), "BA rows"
    assert any((m == 0).any() for m in mu.values()), "rows without a pixel >= 1/2"
    assert max(CASES[name]["probs"][0, 0].numel() for name in SOLVED) >= 40_000
    assert any((CASES[name]["probs"] == 0.5).any() for name in SOLVED), "pixels at exactly 1/2"


@pytest.mark.parametrize("name", SOLVED)
def test_masks_sizes_and_cut_points_equal_the_reference(name):
    case = CASES[name]
    probs = case["probs"]
    masks, tau, cut = reference_rankdice(probs, strict=True)
    assert masks.dtype == torch.bool and masks.shape == probs.shape
    assert torch.equal(masks, unpack_bits(case["masks"], probs.shape))
    assert torch.equal(tau, case["tau"])
    assert torch.equal(cut, case["cutpoint"])
    # the masks are the top-tau pixels of each row
    assert torch.equal(masks.flatten(2).sum(-1).float(), tau)


def test_documented_quirks_hold_on_the_recorded_rows():
    # u <= low: 60 pixels at probability 1 and one at 0.99, yet the reference predicts nothing for the class.
    tau = CASES["support_above_search_bound"]["tau"]
    assert tau[0, 0] == 0 and tau[0, 1] > 0
    # NaN scores: T-RNA keeps t = 0 (cut point p_(1) = 1), BA's argmax of all-NaN scores gives t = 1.
    case = CASES["nan_scores"]
    assert case["tau"].tolist() == [[0.0, 1.0]] and case["cutpoint"][0, 0] == 1.0


@pytest.mark.parametrize("name", RAISING)
def test_where_the_reference_raises_strict_raises_and_lenient_falls_back(name):
    probs = CASES[name]["probs"]
    with pytest.raises(ValueError, match="PS/rankdice.py raises here"):
        reference_rankdice(probs, strict=True)
    with pytest.warns(RuntimeWarning, match="reference rank_dice fallback"):
        masks, tau, cut = reference_rankdice(probs, strict=False)
    assert masks.shape == probs.shape and tau.shape == cut.shape == probs.shape[:2]
    assert torch.equal(masks.flatten(2).sum(-1).float(), tau)
    if name == "raises_zero_variance":  # undefined support: the class predicts nothing
        assert tau[0, 0] == 0 and not masks[0, 0].any()


def test_single_live_row_is_reduced_as_in_a_batch(monkeypatch):
    # Only rows with a pixel >= 1/2 are reduced on CPU. A lone row of 480 x 480 pixels would be summed with the
    # pixel axis split across threads (other float32 bits than in the reference's batch), so it is padded.
    import rankseg.reference_rankdice as module

    seen = []
    support = module._support
    monkeypatch.setattr(module, "_support", lambda mu, var, m3, d: seen.append((var, m3)) or support(mu, var, m3, d))
    torch.set_num_threads(2)
    probs = torch.rand(1, 2, 480, 480, generator=torch.Generator().manual_seed(0)) ** 3
    alone = probs.clone()
    alone[:, 1] = 0.1
    full, part = reference_rankdice(probs), reference_rankdice(alone)
    assert torch.equal(seen[1][0][0], seen[0][0][0]) and torch.equal(seen[1][1][0], seen[0][1][0])
    assert torch.equal(part[1][:, 0], full[1][:, 0]) and torch.equal(part[0][:, 0], full[0][:, 0])
    assert not part[0][:, 1].any() and part[1][0, 1] == 0


def test_every_row_path_used_on_cuda_gives_the_same_results(monkeypatch):
    # CUDA solves every row (its reductions depend on the row count); the same bookkeeping, run here on CPU.
    import rankseg.reference_rankdice as module

    monkeypatch.setattr(module, "_solve_every_row", lambda device: True)
    for name in ("softmax_small_objects", "quantised_ties", "nan_scores"):
        case = CASES[name]
        masks, tau, cut = reference_rankdice(case["probs"])
        assert torch.equal(masks, unpack_bits(case["masks"], case["probs"].shape)), name
        assert torch.equal(tau, case["tau"]) and torch.equal(cut, case["cutpoint"]), name


def test_rule_and_threshold_reference():
    probs = CASES["quantised_ties"]["probs"]
    assert ReferenceRankDiceRule.requires_proper
    expected = unpack_bits(CASES["quantised_ties"]["masks"], probs.shape)
    assert torch.equal(ReferenceRankDiceRule()(probs), expected)
    # the tester's T: >= 0.5 (pixels at exactly 0.5 are kept); the default rule stays strict
    assert torch.equal(ThresholdRule(0.5, inclusive=True)(probs), probs >= 0.5)
    assert torch.equal(ThresholdRule(0.5)(probs), probs > 0.5)
    assert (probs == 0.5).any()


def test_configs_compose(compose):
    from hydra.utils import instantiate

    cfg = compose("evaluate", ["predict=[rankdice_reference,threshold_reference]"])
    rules = {name: instantiate(node) for name, node in cfg.predict.items()}
    assert isinstance(rules["rankdice_reference"], ReferenceRankDiceRule) and not rules["rankdice_reference"].strict
    assert rules["threshold_reference"].inclusive and rules["threshold_reference"].threshold == 0.5
    probs = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 12 x 12 images are below the reference's domain
        assert rules["rankdice_reference"](probs).shape == probs.shape
