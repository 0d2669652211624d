"""The seeded Kvasir-SEG train/val split."""

from __future__ import annotations

import pytest

from rankseg.data import kvasir_split


def _names(n: int) -> list[str]:
    return [f"cju{i:022d}" for i in range(n)]


def test_880_120_on_1000_names() -> None:
    train, val = kvasir_split(_names(1000))
    assert (len(train), len(val)) == (880, 120)
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(_names(1000))
    assert train == sorted(train) and val == sorted(val)


def test_deterministic_and_order_independent() -> None:
    names = _names(1000)
    assert kvasir_split(names) == kvasir_split(list(reversed(names)))
    assert kvasir_split(names, seed=1) == kvasir_split(names, seed=1)
    assert kvasir_split(names, seed=1)[1] != kvasir_split(names, seed=0)[1]


@pytest.mark.parametrize(("n", "n_val"), [(10, 1), (100, 12), (250, 30), (2, 1), (1, 0), (0, 0)])
def test_proportional(n: int, n_val: int) -> None:
    train, val = kvasir_split(_names(n))
    assert (len(train), len(val)) == (n - n_val, n_val)


def test_rejects_duplicates() -> None:
    with pytest.raises(ValueError):
        kvasir_split(["a", "a", "b"])
