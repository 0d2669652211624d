"""Reduced runs of scripts/simulations.py, checked against brute force over all 2^d label vectors."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rankseg.experiments.simulations import example1_map, example2_maps, truncated_normal

ROOT = Path(__file__).resolve().parents[2]


def _has_solver_api() -> bool:
    try:
        import rankseg
    except ImportError:
        return False
    return hasattr(rankseg, "expected_metric") and hasattr(getattr(rankseg, "functional", None), "rankseg")


requires_rankseg = pytest.mark.skipif(
    not _has_solver_api(), reason="rankseg.expected_metric / rankseg.functional.rankseg not importable yet"
)


def _script():
    spec = importlib.util.spec_from_file_location("simulations_script", ROOT / "scripts" / "simulations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _all_binary(d: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=d)), dtype=np.float64)


def brute_force_dice(p: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """E[Dice] of each mask under independent Bernoulli(p) labels, by summing over all 2^d label vectors."""
    y = _all_binary(p.size)  # (2^d, d)
    weight = np.prod(np.where(y == 1, p, 1 - p), axis=1)  # P(Y = y)
    inter = masks @ y.T
    denom = masks.sum(1)[:, None] + y.sum(1)[None, :]
    dice = np.divide(2 * inter, denom, out=np.zeros_like(inter), where=denom > 0)  # both empty -> 0
    return dice @ weight


def _top(p: np.ndarray, tau: int) -> np.ndarray:
    mask = np.zeros(p.size)
    mask[np.argsort(-p, kind="stable")[:tau]] = 1.0
    return mask


def test_brute_force_oracle_by_hand():
    # one pixel p, predicted: Dice = 1 if Y = 1 else 0
    assert brute_force_dice(np.array([0.3]), np.array([[1.0]])) == pytest.approx([0.3])
    # two pixels, predict the first: Y=(1,0) -> 1, Y=(1,1) -> 2/3, else 0
    p = np.array([0.6, 0.5])
    assert brute_force_dice(p, np.array([[1.0, 0.0]])) == pytest.approx([0.6 * 0.5 + 0.6 * 0.5 * 2 / 3])
    assert brute_force_dice(p, np.zeros((1, 2))) == pytest.approx([0.0])


def test_maps_match_the_protocol():
    p = example1_map(1.05, 28)
    assert p.shape == (1, 1, 28, 28) and p.dtype == torch.float32
    assert p[0, 0, 0, 0] == 1 and p[0, 0, 3, 4] == pytest.approx(1.05**-7)
    assert torch.equal(example1_map(1.05, 256)[..., :28, :28], p)  # nested top-left squares

    gen = torch.Generator().manual_seed(0)
    probs, rho = example2_maps(300, gen, width=16)
    assert probs.shape == (300, 1, 16, 16) and probs.dtype == torch.float32 and rho.shape == (300,)
    side = (rho * 16).long()
    for i in (0, 1, 2):
        block = probs[i, 0, : side[i], : side[i]]
        assert ((block >= 0.5) & (block <= 1)).all()
        outside = probs[i, 0].clone()
        outside[: side[i], : side[i]] = 0.15
        assert ((outside >= 0.1) & (outside <= 0.2)).all()
    again, _ = example2_maps(300, torch.Generator().manual_seed(0), width=16)
    assert torch.equal(probs, again)


def test_truncated_normal_moments():
    x = truncated_normal(0.1, 0.1, 0.2, (200_000,), torch.Generator().manual_seed(1))
    assert x.min() >= 0.1 and x.max() <= 0.2
    # mean of N(0.1, 0.01) truncated to [0.1, 0.2]: loc + scale (phi(0) - phi(1)) / (Phi(1) - Phi(0))
    from scipy.stats import truncnorm

    assert float(x.mean()) == pytest.approx(truncnorm.mean(0, 1, loc=0.1, scale=0.1), abs=5e-4)


@requires_rankseg
def test_example1_reduced_run(tmp_path):
    _script().main(["example1", "--out", str(tmp_path), "--widths", "12", "16", "--mc-draws", "400"])
    df = pd.read_csv(tmp_path / "example1.csv")
    assert list(df.columns) == ["base", "width", "rule", "tau", "expected_dice", "mc_dice", "mc_se"]
    assert len(df) == 3 * 2 * 5
    for (_, _), grp in df.groupby(["base", "width"]):
        exact = grp.loc[grp.rule == "exact", "expected_dice"].item()
        assert (grp.expected_dice <= exact + 1e-9).all(), grp
    # Monte Carlo agrees with the exact expectation
    z = (df.mc_dice - df.expected_dice).abs() / df.mc_se
    assert (z < 5).all(), df[z >= 5]
    assert (tmp_path / "example1_config.json").exists() and (tmp_path / "example1_timings.csv").exists()


@requires_rankseg
@pytest.mark.parametrize("base", [1.05, 1.5, 2.0])
def test_example1_tiny_map_matches_enumeration(tmp_path, base):
    _script().main(
        ["example1", "--out", str(tmp_path), "--widths", "3", "--bases", str(base), "--mc-draws", "0"]
    )
    df = pd.read_csv(tmp_path / "example1.csv")
    p = example1_map(base, 3).double().flatten().numpy()  # d = 9
    # every rule keeps the top-tau pixels (ties on an anti-diagonal are exchangeable), so the mask is known
    brute = brute_force_dice(p, np.stack([_top(p, t) for t in df.tau]))
    np.testing.assert_allclose(df.expected_dice, brute, rtol=0, atol=1e-9)
    # and the exact rule attains the best of all 2^9 masks
    best = brute_force_dice(p, _all_binary(p.size)).max()
    assert df.loc[df.rule == "exact", "expected_dice"].item() == pytest.approx(best, abs=1e-9)


@requires_rankseg
def test_example2_reduced_run(tmp_path):
    _script().main(["example2", "--out", str(tmp_path), "--n-images", "30", "--width", "12", "--chunk", "8"])
    summary = pd.read_csv(tmp_path / "example2.csv")
    assert list(summary.columns) == ["rule", "n", "mean_expected_dice", "se"]
    assert len(summary) == 9 + 3
    exact = summary.set_index("rule").loc["exact", "mean_expected_dice"]
    assert (summary.mean_expected_dice <= exact + 1e-9).all(), summary
    per_image = pd.read_csv(tmp_path / "example2_per_image.csv")
    rules = list(summary.rule)
    assert (per_image[rules].to_numpy() <= per_image[["exact"]].to_numpy() + 1e-9).all()
    by_rho = pd.read_csv(tmp_path / "example2_by_rho.csv")
    assert by_rho.groupby("rule")["n"].sum().eq(30).all()
    grid = pd.read_csv(tmp_path / "cutoff_heatmap.csv")
    assert len(grid) == 7 * 8 and set(grid.beta.round(1)) == {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}
    assert (grid.cutoff.dropna() <= grid.last_included.dropna().reindex(grid.cutoff.dropna().index)).all()
    assert (tmp_path / "cutoff_heatmap.png").stat().st_size > 1000


@requires_rankseg
def test_example2_tiny_maps_match_enumeration(tmp_path):
    _script().main(["example2", "--out", str(tmp_path), "--n-images", "6", "--width", "3", "--seed", "3"])
    per_image = pd.read_csv(tmp_path / "example2_per_image.csv")
    probs, _ = example2_maps(6, torch.Generator().manual_seed(3), width=3)
    all_masks = _all_binary(9)
    for i in range(6):
        p = probs[i].double().flatten().numpy()
        for t in (0.1, 0.5, 0.9):
            mask = (probs[i].flatten().numpy() > t).astype(np.float64)
            assert per_image.loc[i, f"threshold_{t:g}"] == pytest.approx(
                brute_force_dice(p, mask[None])[0], abs=1e-9
            )
        assert per_image.loc[i, "exact"] == pytest.approx(brute_force_dice(p, all_masks).max(), abs=1e-9)


@requires_rankseg
def test_runs_are_reproducible(tmp_path):
    for name in ("a", "b"):
        _script().main(["example2", "--out", str(tmp_path / name), "--n-images", "10", "--width", "8"])
        _script().main(["example1", "--out", str(tmp_path / name), "--widths", "6", "--mc-draws", "50"])
    for file in ("example1.csv", "example2.csv", "example2_per_image.csv", "cutoff_heatmap.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
