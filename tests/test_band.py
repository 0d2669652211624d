"""The partial-sort solvers (rankseg._band and its users) against full sorts, brute force and their torch paths.

The band paths only run on rows long enough to be worth it, so these inputs are larger than the enumeration
tests of test_solvers.py: a few thousand pixels per row, with the distributions that stress a partial sort
(smooth maps, white noise, hard labels, ties, tiny objects, flat rows).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rankseg import _ba, _band, _exact, expected_metric
from rankseg._common import numpy_kernels, sort_descending, top_tau_mask
from rankseg.functional import rankseg as rs

F64 = torch.float64


def _smooth(gen, b, c, h, w, scale=4.0):
    coarse = torch.randn(b, c, max(h // 8, 2), max(w // 8, 2), generator=gen) * scale
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).softmax(1)


def hard_rows(gen: torch.Generator) -> torch.Tensor:
    """(rows, 4096) float32 probabilities with the awkward cases of a partial sort, one per row."""
    d = 4096
    u = torch.rand(8, d, generator=gen)
    rows = [
        u[0],  # uniform
        u[1] ** 6,  # mass near 0, a few confident pixels
        (torch.randn(d, generator=gen) * 3).sigmoid(),  # bimodal
        torch.where(u[2] < 0.05, 0.97, 0.01),  # two values: hard-ish labels, massive ties
        torch.round(u[3] * 8) / 8,  # nine values: ties at every cut
        torch.where(torch.arange(d) < 12, 0.9, 0.02 * u[4]),  # a tiny object
        torch.full((d,), 0.6),  # a flat row above 0.5
        torch.where(u[5] < 0.3, 0.55 + 0.01 * u[6], 0.3 * u[7]),  # a dense cluster right above the cut
    ]
    return torch.stack(rows).float()


def sorted_rma_tau(p: torch.Tensor, metric: str, s: float) -> torch.Tensor:
    """The sort-based RMA rule of 0.0.8 (float64 prefix sums), ties to the smaller tau. Shape (r, d) -> (r,)."""
    vals = p.double().sort(1, descending=True).values
    total = torch.cat([torch.zeros(p.shape[0], 1, dtype=F64), vals.cumsum(1)], 1)
    mu = total[:, -1:]
    tau = torch.arange(p.shape[1] + 1, dtype=F64)
    if metric == "dice":
        score = 2 * total / (mu + tau + 1)
    else:
        score = (total + s) / (mu - total + tau + s)
    return score.argmax(1)


@pytest.mark.parametrize("route", ["estimate", "general"])
@pytest.mark.parametrize(("metric", "smooth"), [("dice", 0.0), ("iou", 0.0), ("iou", 1.0)])
def test_rma_band_path_equals_the_sorted_rule(metric, smooth, route, monkeypatch):
    """The CPU path with one band end at the estimate's cut ("estimate") and the general bracket-and-band
    path it hands rows to ("general", forced for every row) against the sort-based rule; rows of a length
    that is not a multiple of 8 (no popcount) and float64 rows included."""
    if route == "general":
        monkeypatch.setattr(_band, "_BRACKET_TOL", -1.0)
    gen = torch.Generator().manual_seed(0)
    batches = [
        hard_rows(gen),
        _smooth(gen, 2, 6, 64, 96).reshape(12, -1),
        torch.rand(6, 9000, generator=gen) ** 3,
        torch.rand(5, 4099, generator=gen) ** 2,
        _smooth(gen, 1, 5, 40, 72).reshape(5, -1).double(),
    ]
    for rows in batches:
        probs = rows.view(rows.shape[0], 1, -1)
        masks = rs(probs, metric, smooth=smooth, output_mode="multilabel", pruning_prob=0.0).view(rows.shape)
        assert torch.equal(masks.sum(1), sorted_rma_tau(rows, metric, smooth))
        for row, mask in zip(rows, masks):  # upper sets
            if mask.any() and (~mask).any():
                assert row[mask].min() >= row[~mask].max()


def test_count_sum_above_is_exact():
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(5, 3000, generator=gen)
    thr = torch.tensor([0.0, 0.3, 0.5, 0.999, 1.0])
    work = torch.empty_like(p)
    n, total = _band.count_sum_above(p, thr, work)
    above = p > thr.unsqueeze(1)
    assert torch.equal(n, above.sum(1))
    assert torch.allclose(total, torch.where(above, p.double(), 0).sum(1), rtol=1e-6, atol=1e-6)


def test_ratio_bracket_contains_the_optimum():
    gen = torch.Generator().manual_seed(2)
    rows = torch.cat([hard_rows(gen), _smooth(gen, 1, 8, 64, 64).reshape(8, -1)])
    for metric in ("dice", "iou"):
        ratio = _band.Ratio(metric, 0.0, rows.sum(1).double())
        v0 = torch.maximum(
            ratio.score(rows.amax(1).double(), torch.ones(rows.shape[0], dtype=F64)),
            _band.estimate(_band.sample(rows, 64), rows.shape[1], ratio),
        )
        br = _band.ratio_bracket(rows, ratio, v0)
        vals = rows.double().sort(1, descending=True).values
        total = vals.cumsum(1)
        n = torch.arange(1, rows.shape[1] + 1, dtype=F64).expand_as(total)
        best = ratio.score(total, n).amax(1)
        # float32 sums: the bounds hold to ~1e-7 relative (the band adds a 1e-5 slack on top)
        assert (br.v_lo <= best * (1 + 1e-6)).all() and (br.v_hi >= best * (1 - 1e-6)).all()


def test_mask_at_rank_takes_ties_in_index_order():
    gen = torch.Generator().manual_seed(3)
    p = (torch.round(torch.rand(4, 500, generator=gen) * 5) / 5).float()  # six values, many ties
    br = _band.Bracket(
        torch.zeros(4, dtype=F64), torch.ones(4, dtype=F64), torch.full((4,), 0.5), (p > 0.5).sum(1),
        torch.where(p > 0.5, p.double(), 0).sum(1),
    )
    band = _band.gather_band(p, torch.full((4,), 0.1), torch.full((4,), 0.9), br)
    tau = band.n_hi + torch.tensor([0, 7, 123, int(band.count.min())])
    got = _band.mask_at_rank(band, tau)
    want = top_tau_mask(p, sort_descending(p), tau)
    assert torch.equal(got, want) and torch.equal(got.sum(1), tau)


def test_ba_band_path_equals_the_sorted_search_and_certifies_real_maps():
    gen = torch.Generator().manual_seed(4)
    for rows in (_smooth(gen, 2, 6, 64, 96).reshape(12, -1), hard_rows(gen)):
        for solver in ("BA", "BA+TRNA"):
            masks, ok = _ba._ba_band_masks(rows, 1e-4, solver, rows.shape[1], rows.amax(1), 2**26)
            ref = _ba._sorted_masks(rows, 0.0, 1e-4, solver, 2**26)
            assert torch.equal(masks[ok], ref[ok])
            # and the public call (band path plus fallback) equals the sorted search on every row
            probs = rows.view(rows.shape[0], 1, -1)
            out = rs(probs, "dice", output_mode="multilabel", solver=solver, pruning_prob=0.0)
            assert torch.equal(out.view(rows.shape), ref)
    smooth_rows = _smooth(gen, 2, 6, 64, 96).reshape(12, -1)
    _, ok = _ba._ba_band_masks(smooth_rows, 1e-4, "BA", 96, smooth_rows.amax(1), 2**26)
    assert ok.float().mean() >= 0.75  # the band path, not the fallback, solves real-looking maps


@pytest.mark.parametrize("index_block", [None, 1], ids=["one-block", "row-blocks"])
@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_exact_band_path_equals_the_sorted_solver(metric, index_block, monkeypatch):
    if index_block is not None:  # the nonzero over {p > lo} in blocks of a quarter of the rows
        monkeypatch.setattr(_band, "_INDEX_BLOCK", index_block)
    gen = torch.Generator().manual_seed(5)
    for rows in (_smooth(gen, 2, 5, 64, 96).reshape(10, -1), hard_rows(gen)):
        masks, ok = _exact._band_masks(rows, metric, rows.shape[1], rows.amax(1))
        ref = _exact._sorted_masks(rows, metric, 0.0)
        assert torch.equal(masks[ok], ref[ok])
        out = rs(rows.view(rows.shape[0], 1, -1), metric, output_mode="multilabel", solver="exact", pruning_prob=0.0)
        assert torch.equal(out.view(rows.shape), ref)
    smooth_rows = _smooth(gen, 2, 5, 64, 96).reshape(10, -1)
    _, ok = _exact._band_masks(smooth_rows, metric, 96, smooth_rows.amax(1))
    assert ok.float().mean() >= 0.75


def test_exact_band_choice_is_optimal_against_expected_metric():
    # the chosen tau beats its neighbours and the RMA choice under the independent expected_metric
    gen = torch.Generator().manual_seed(6)
    rows = _smooth(gen, 1, 4, 48, 48).reshape(4, -1)
    for metric in ("dice", "iou"):
        masks, ok = _exact._band_masks(rows, metric, 48, rows.amax(1))
        assert ok.all()
        vals = rows.sort(1, descending=True).values
        for i in range(rows.shape[0]):
            tau = int(masks[i].sum())
            cands = [tau - 1, tau, tau + 1, int(sorted_rma_tau(rows[i : i + 1], metric, 0.0))]
            scores = []
            for k in cands:
                m = torch.zeros(1, 1, rows.shape[1], dtype=torch.bool)
                m[0, 0, rows[i] > vals[i, k]] = True  # no ties in smooth random maps
                m[0, 0, rows[i] >= vals[i, k - 1]] = True
                scores.append(expected_metric(rows[i].view(1, 1, -1), m, metric).item())
            assert scores[1] >= max(scores) - 1e-12


@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_exact_multiclass_increments_match_expected_metric_differences(metric):
    gen = torch.Generator().manual_seed(7)
    probs = _smooth(gen, 1, 3, 24, 24, scale=3.0).reshape(1, 3, -1).double()
    masks = rs(probs, metric, output_mode="multilabel", solver="exact")
    from rankseg._multiclass import selection_count

    count = selection_count(masks)
    gains = _exact.exact_gains(probs, masks, count, metric, 0.0)(slice(None))
    unique = masks & (count == 1).unsqueeze(1)
    base = expected_metric(probs, unique, metric)[0]
    for c in range(3):
        for i in (0, 5, 100, 300, 575):
            grown = unique.clone()
            grown[0, c, i] = True
            want = expected_metric(probs, grown, metric)[0, c] - base[c]
            if unique[0, c, i]:
                continue  # already owned: no increment defined
            assert abs(gains[0, c, i].item() - want.item()) < 1e-9


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(metric="dice", output_mode="multilabel"),
        dict(metric="iou", output_mode="multilabel", smooth=1.0),
        dict(metric="dice", output_mode="multiclass"),
        dict(metric="iou", output_mode="multiclass"),
        dict(metric="dice", output_mode="multiclass", unassigned_policy="void"),
        dict(metric="dice", output_mode="multilabel", solver="BA"),
        dict(metric="dice", output_mode="multilabel", solver="exact"),
        dict(metric="iou", output_mode="multiclass", solver="exact"),
    ],
    ids=lambda kw: "-".join(str(v) for v in kw.values()),
)
def test_torch_paths_equal_the_numpy_paths(kwargs):
    # the torch code is what runs on GPUs; on CPU the NumPy fast paths normally replace parts of it
    gen = torch.Generator().manual_seed(8)
    for probs in (_smooth(gen, 2, 4, 48, 64), torch.randn(1, 3, 40, 40, generator=gen).mul(2).softmax(1)):
        ref = rs(probs, **kwargs)
        with numpy_kernels(False):
            assert torch.equal(rs(probs, **kwargs), ref)


def test_sample_stride_is_coprime_with_the_width():
    p = torch.rand(2, 256 * 256)
    sub = _band.sample(p, 256)
    stride = int(np.ceil(p.shape[1] / sub.shape[1]))
    assert np.gcd(stride, 256) == 1 and 900 <= sub.shape[1] <= 1100


@pytest.mark.parametrize("metric", ["dice", "iou"])
def test_band_path_exact_scores_match_expected_metric(metric, monkeypatch):
    # the band path's own exact scores (float32 power sums, truncated series) against expected_metric in
    # float64: within the relative slack its certificates allow for (rankseg._band.SCORE_SLACK)
    gen = torch.Generator().manual_seed(9)
    rows = _smooth(gen, 1, 6, 96, 96).reshape(6, -1)
    seen = {}
    original = _exact._band_scores

    def spy(pre, band, metric_, t, log_w, log_g, hi_sums, y_pow, j0, span):
        out = original(pre, band, metric_, t, log_w, log_g, hi_sums, y_pow, j0, span)
        seen.update(tau=band.n_hi + j0, score=out[:, 0])
        return out

    monkeypatch.setattr(_exact, "_band_scores", spy)
    _, ok = _exact._band_masks(rows, metric, 96, rows.amax(1))
    assert ok.any()
    vals = rows.sort(1, descending=True).values
    for i in range(rows.shape[0]):
        tau = int(seen["tau"][i])
        mask = (rows[i] >= vals[i, tau - 1]).view(1, 1, -1)
        assert int(mask.sum()) == tau  # no ties in smooth random maps
        want = expected_metric(rows[i].double().view(1, 1, -1), mask, metric).item()
        assert abs(seen["score"][i].item() - want) <= 0.2 * _band.SCORE_SLACK * want


def _sort_in_child(queue) -> None:
    # NumPy only besides sort_descending: torch's own OpenMP threads are not fork-safe either (DataLoader
    # workers run with one thread for that reason), and this child keeps two threads to use the pool.
    x = np.random.default_rng(3).random((8, 2**16), dtype=np.float32)
    queue.put(bool(np.array_equal(sort_descending(torch.from_numpy(x)).numpy(), np.sort(x, 1)[:, ::-1])))


def test_row_block_pool_survives_fork():
    """The NumPy row-block pool is per process: a forked child (a DataLoader worker) gets its own threads
    instead of waiting forever on the parent's, which do not exist in the child."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    x = torch.rand(8, 2**16, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the sort splits over the torch thread count
    try:
        assert torch.equal(sort_descending(x), torch.sort(x, 1, descending=True).values)  # starts the pool
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_sort_in_child, args=(queue,))
        child.start()
        child.join(60)
        alive = child.is_alive()
        if alive:
            child.kill()
        assert not alive, "the forked child hung on the parent's thread pool"
        assert queue.get(timeout=5) is True
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("chunk", [1, 7, 50, 2**17])
def test_power_sums_in_chunks_match_direct_sums(monkeypatch, chunk):
    """Ragged power sums computed chunk by chunk (chunks that split rows, empty rows anywhere) against a
    per-row float64 sum of powers."""
    monkeypatch.setattr(_band, "_POWER_CHUNK", chunk)
    gen = torch.Generator().manual_seed(chunk)
    for _ in range(20):
        r = int(torch.randint(1, 12, (1,), generator=gen))
        counts = torch.randint(0, 40, (r,), generator=gen) * (torch.rand(r, generator=gen) > 0.3)
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        x = torch.rand(int(starts[-1]), generator=gen)
        first, terms = 2, 5
        got = _band.power_sums(x, starts, terms, first)
        rows = [x[starts[i] : starts[i + 1]].double() for i in range(r)]
        ref = torch.tensor([[float((row**m).sum()) for m in range(first, terms + 1)] for row in rows], dtype=F64)
        assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)
        with numpy_kernels(False):
            assert torch.allclose(_band.power_sums(x, starts, terms, first), ref, rtol=1e-12, atol=1e-12)


def test_low_pixel_series_length_keeps_log_g_within_tolerance():
    """The series length of the pixels below the band (``_exact._low_terms``) against the truncation error
    of sum log(1 - p y) computed directly: within the series tolerance for the chosen length, and the
    worst-case pixels (all at lo) show that one term fewer would not always do."""
    gen = torch.Generator().manual_seed(7)
    for _ in range(40):
        r = int(torch.randint(1, 6, (1,), generator=gen))
        lo = torch.rand(r, generator=gen, dtype=F64) * 0.5
        y = torch.rand(r, generator=gen, dtype=F64) * 0.3
        n = torch.randint(50, 5000, (r,), generator=gen)
        rows = [torch.rand(int(k), generator=gen, dtype=F64) * lo[i] for i, k in enumerate(n)]
        mu = torch.stack([row.sum() for row in rows])
        terms = 40
        m_low = _exact._low_terms(mu, y, lo, terms)
        for i, row in enumerate(rows):
            direct = torch.log1p(-row * y[i]).sum()
            series = -sum((row ** m).sum() * y[i] ** m / m for m in range(1, m_low + 1))
            assert abs(float(direct - series)) <= _exact._SERIES_TOL
        if m_low > 2:  # every pixel at lo: mass mu, tail at least mu y (lo y)^M / (M + 1)
            worst = int(torch.argmax(mu * y * (lo * y) ** (m_low - 1)))
            x = float(lo[worst] * y[worst])
            tail = float(mu[worst] * y[worst]) * x ** (m_low - 1) / m_low
            assert tail > _exact._SERIES_TOL / 2


@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.6, 1.0])
@pytest.mark.parametrize("shape", [(3, 64), (5, 37), (1, 8), (2, 0)])
def test_sparse_flatnonzero_equals_numpy(density, shape):
    """The word-by-word nonzero of band masks against np.flatnonzero: scattered, clustered and dense masks,
    sizes that are and are not multiples of 8, an empty array."""
    rng = np.random.default_rng(int(density * 1000) + shape[1])
    scattered = rng.random(shape) < density
    clustered = np.zeros(shape, dtype=bool)
    if shape[1]:
        clustered[:, : int(shape[1] * density)] = True  # runs, as an upper set of a smooth map gives
    for mask in (scattered, clustered):
        assert np.array_equal(_band._sparse_flatnonzero(mask), np.flatnonzero(mask))


def test_cache_blocked_row_powers_match_float64_sums(monkeypatch):
    """Row power sums p^2 .. p^5 taken in cache blocks (blocks of one, of three and of all rows) against
    float64 sums of powers, and the blocks against each other."""
    from rankseg import _common

    gen = torch.Generator().manual_seed(11)
    p = torch.rand(7, 3000, generator=gen) ** 3
    ref = torch.stack([(p.double() ** m).sum(1) for m in range(2, 6)], 1)
    results = []
    for block in (1, 3 * 3000 * 4, 2**30):
        monkeypatch.setattr(_common, "CACHE_BLOCK", block)
        monkeypatch.setattr(_common, "_CACHE_MIN_BYTES", 0)
        blocks = _common.cache_blocks(p)
        assert blocks[0].start == 0 and blocks[-1].stop == 7
        assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
        out = torch.full((7, 4), float("nan"), dtype=F64)
        _exact._row_powers(p, torch.empty_like(p), out)
        assert torch.allclose(out, ref, rtol=1e-6, atol=0)
        results.append(out)
    assert len(_common.cache_blocks(p)) == 1
    assert all(torch.equal(results[0], r) for r in results[1:])
