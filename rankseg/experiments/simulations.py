"""The paper's simulations (Dai & Li, JMLR 2023, "Example 1" and "Example 2"; ``paper_protocol.md`` §7).

Every simulation is a single-class binary problem: labels are independent Bernoulli(p) per pixel,
the prediction is fixed per image, and the score is the expected Dice over the labels, with an empty
prediction and an empty truth scoring 0 (the reference ``dice_coeff`` convention). Expected values are
exact (:func:`rankseg.expected_metric`); Example 1 adds a seeded Monte Carlo estimate from label draws as
a cross-check.

- Example 1: the fixed map p[r, c] = base^-(r + c); rules threshold (p > 0.5), RMA, BA, TRNA and exact.
- Example 2: random 64x64 maps (background ~ truncated normal on [0.1, 0.2], a top-left foreground
  block of side int(rho * 64) with p ~ U(0.5, 1)); fixed thresholds 0.1..0.9 against RMA, BA and exact,
  without pruning.
- The implied-cutoff heatmap: the probability of the first pixel the exact rule leaves out, over a grid of
  background levels beta and block sizes rho.

Run them with ``python scripts/simulations.py example1 --out results/simulations`` (and ``example2``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

__all__ = [
    "EX1_RULES",
    "EX2_THRESHOLDS",
    "cutoff_grid",
    "example1_map",
    "example2_maps",
    "expected_dice",
    "monte_carlo_dice",
    "plot_cutoff_heatmap",
    "predict",
    "run_example1",
    "run_example2",
    "summarise_by_rho",
    "truncated_normal",
]

#: Rules of Example 1, in output order; all but ``threshold`` are rankseg solvers.
EX1_RULES: tuple[str, ...] = ("threshold", "rma", "ba", "trna", "exact")
#: Fixed thresholds of Example 2.
EX2_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
_SOLVERS = {"rma": "RMA", "ba": "BA", "trna": "TRNA", "exact": "exact"}


def _rankseg():
    import rankseg  # late import: this module (and its tests' skips) load before the solver library does

    return rankseg


def example1_map(base: float, width: int) -> torch.Tensor:
    """The Example 1 map p[r, c] = base^-(r + c), r, c = 0..width-1 (p = 1 at the top-left corner).

    Returns:
        float32 probabilities.

    Shape:
        (1, 1, width, width)
    """
    idx = torch.arange(width, dtype=torch.float64)
    p = torch.as_tensor(base, dtype=torch.float64).pow(-(idx[:, None] + idx[None, :]))
    return p.to(torch.float32)[None, None]


def truncated_normal(
    loc: float, scale: float, upper: float, size: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """Normal(loc, scale^2) truncated to [loc, upper], sampled by inverse CDF.

    ``scipy.stats.truncnorm.rvs(0, 1, loc=L, scale=0.1)`` of the reference code is ``upper = L + 0.1``.

    Returns:
        float64 samples of the given size.
    """
    lo = torch.special.ndtr(torch.tensor(0.0, dtype=torch.float64))
    hi = torch.special.ndtr(torch.tensor((upper - loc) / scale, dtype=torch.float64))
    u = torch.rand(tuple(size), generator=generator, dtype=torch.float64)
    x = loc + scale * torch.special.ndtri(lo + u * (hi - lo))
    return x.clamp(loc, upper)  # ndtri rounding must not step outside the support


def example2_maps(
    n_images: int,
    generator: torch.Generator,
    width: int = 64,
    beta: float = 0.1,
    rho: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random maps of Example 2: background on [beta, beta + 0.1], a top-left block of side int(rho * width).

    Background p ~ Normal(beta, 0.1^2) truncated to [beta, beta + 0.1]; block p ~ U(0.5, 1); then clipped to
    [0, 1].

    Args:
        n_images: Number of maps.
        generator: CPU generator; the maps depend only on it, not on the device used later.
        width: Side of the square maps.
        beta: Background level (0.1 in Example 2; varied in the heatmap).
        rho: Block sizes in [0, 1], one per image; drawn from U(0, 1) when None.

    Returns:
        ``(probs, rho)``: float32 probabilities and float64 block sizes.

    Shape:
        probs (n_images, 1, width, width), rho (n_images,)
    """
    if rho is None:
        rho = torch.rand(n_images, generator=generator, dtype=torch.float64)
    rho = torch.as_tensor(rho, dtype=torch.float64)
    background = truncated_normal(beta, 0.1, beta + 0.1, (n_images, width, width), generator)
    block = 0.5 + 0.5 * torch.rand((n_images, width, width), generator=generator, dtype=torch.float32)
    side = (rho * width).long()  # int() truncation, as in the reference
    idx = torch.arange(width)
    inside = (idx[None, :, None] < side[:, None, None]) & (idx[None, None, :] < side[:, None, None])
    probs = torch.where(inside, block, background.to(torch.float32)).clamp(0.0, 1.0)
    return probs[:, None], rho


def predict(probs: torch.Tensor, rule: str, pruning_prob: float = 0.5) -> torch.Tensor:
    """Binary prediction of one rule.

    Args:
        probs: Probabilities in [0, 1].
        rule: ``threshold`` (p > 0.5, strict), ``threshold_<t>`` (p > t), or a rankseg solver: ``rma``,
            ``ba``, ``trna``, ``exact`` (Dice-optimal, multilabel output).
        pruning_prob: Passed to the solver: an image whose max probability is at most this gets an empty mask.

    Returns:
        bool mask.

    Shape:
        probs (B, 1, H, W) -> (B, 1, H, W)
    """
    if rule == "threshold":
        return probs > 0.5
    if rule.startswith("threshold_"):
        return probs > float(rule.removeprefix("threshold_"))
    if rule not in _SOLVERS:
        raise ValueError(
            f"unknown rule {rule!r}; expected threshold, threshold_<t> or one of {list(_SOLVERS)}"
        )
    rs = _rankseg()
    return rs.functional.rankseg(
        probs, metric="dice", output_mode="multilabel", solver=_SOLVERS[rule], pruning_prob=pruning_prob
    ).bool()


def expected_dice(probs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    """Exact expected Dice per image under independent Bernoulli(p) labels (both empty counts 0).

    Shape:
        probs, preds (B, 1, H, W) -> (B,) float64
    """
    return _rankseg().expected_metric(probs, preds, metric="dice", smooth=0.0)[:, 0]


def monte_carlo_dice(
    probs: torch.Tensor, preds: torch.Tensor, n_draws: int, generator: torch.Generator, chunk: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo Dice of several masks of one map, all scored on the same label draws.

    Dice per draw is 2|P & Y| / (|P| + |Y|), 0 when both are empty; the draws are Y ~ Bernoulli(p).

    Args:
        probs: One probability map.
        preds: R masks of that map.
        n_draws: Number of label draws.
        generator: CPU generator for the draws.
        chunk: Draws per batch (bounds memory at chunk x H x W).

    Returns:
        ``(mean, se)`` per mask, se = std / sqrt(n_draws).

    Shape:
        probs (H, W), preds (R, H, W) -> (R,), (R,)
    """
    p = probs.reshape(-1).to("cpu", torch.float32)
    masks = preds.reshape(preds.shape[0], -1).to("cpu", torch.float32)  # (R, d)
    size_pred = masks.sum(1)
    dices = []
    for start in range(0, n_draws, chunk):
        n = min(chunk, n_draws - start)
        y = (torch.rand((n, p.numel()), generator=generator) < p).to(torch.float32)  # (n, d)
        inter = y @ masks.T  # counts <= d < 2^24: exact in float32
        denom = size_pred[None, :] + y.sum(1, keepdim=True)
        dices.append(torch.where(denom > 0, 2 * inter / denom.clamp_min(1), 0.0).double())
    dice = torch.cat(dices).numpy()
    return dice.mean(0), dice.std(0, ddof=1) / math.sqrt(n_draws)


def run_example1(
    bases: Sequence[float] = (1.01, 1.05, 1.10),
    widths: Sequence[int] = (28, 64, 128, 256),
    rules: Sequence[str] = EX1_RULES,
    n_draws: int = 1000,
    seed: int = 0,
    pruning_prob: float = 0.5,
    trna_max_width: int | None = None,
    device: str | torch.device = "cpu",
    log=print,
) -> pd.DataFrame:
    """Example 1: each rule on each fixed map p[r, c] = base^-(r + c).

    Args:
        bases: Decay bases.
        widths: Image sides (the maps are nested top-left squares of one another).
        rules: Subset of :data:`EX1_RULES`.
        n_draws: Monte Carlo label draws per map (0 skips the Monte Carlo columns' computation; they are NaN).
        seed: Seed of the label draws (one generator per map, seeded from ``seed``, base and width).
        pruning_prob: Solver pruning level (the solvers' default 0.5; the map's max is 1: nothing is pruned).
        trna_max_width: Skip TRNA on maps wider than this (its cost grows quickly); None runs it everywhere.
        device: Where the solvers and expected Dice run.
        log: Progress callback taking one string.

    Returns:
        Columns ``base, width, rule, tau`` (pixels selected), ``expected_dice`` (exact), ``mc_dice, mc_se``,
        ``seconds`` (solver wall time).
    """
    rows = []
    for width in widths:
        for base in bases:
            probs = example1_map(base, width).to(device)
            masks, kept = [], []
            for rule in rules:
                if rule == "trna" and trna_max_width is not None and width > trna_max_width:
                    log(f"  base={base} width={width}: trna skipped (width > {trna_max_width})")
                    continue
                t0 = time.perf_counter()
                pred = predict(probs, rule, pruning_prob)
                if probs.device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
                exp = float(expected_dice(probs, pred)[0])
                rows.append(
                    dict(
                        base=base,
                        width=width,
                        rule=rule,
                        tau=int(pred.sum()),
                        expected_dice=exp,
                        seconds=seconds,
                    )
                )
                masks.append(pred[0, 0])
                kept.append(len(rows) - 1)
                log(
                    f"  base={base} width={width} {rule:9s} tau={rows[-1]['tau']:6d} E[Dice]={exp:.6f} "
                    f"({seconds:.2f} s)"
                )
            if n_draws > 0 and masks:
                gen = torch.Generator().manual_seed(_mix_seed(seed, base, width))
                mean, se = monte_carlo_dice(probs[0, 0], torch.stack(masks), n_draws, gen)
                for i, m, s in zip(kept, mean, se):
                    rows[i].update(mc_dice=float(m), mc_se=float(s))
    cols = ["base", "width", "rule", "tau", "expected_dice", "mc_dice", "mc_se", "seconds"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _mix_seed(seed: int, *keys: float) -> int:
    # A stable per-cell seed, so adding a width or base does not change the draws of the others.
    return int(np.random.SeedSequence([seed, *(int(round(k * 1000)) for k in keys)]).generate_state(1)[0])


def _ex2_rules(thresholds: Sequence[float], solvers: Sequence[str]) -> list[str]:
    return [f"threshold_{t:g}" for t in thresholds] + list(solvers)


def run_example2(
    n_images: int = 2000,
    width: int = 64,
    seed: int = 0,
    thresholds: Sequence[float] = EX2_THRESHOLDS,
    solvers: Sequence[str] = ("rma", "ba", "exact"),
    pruning_prob: float = 0.0,
    chunk: int = 250,
    device: str | torch.device = "cpu",
    log=print,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Example 2: fixed thresholds against the rankseg solvers on random maps, exact expected Dice per image.

    Args:
        n_images: Number of random maps (2000 in the paper).
        width: Map side (64).
        seed: Seed of the map generator.
        thresholds: Fixed thresholds t (rule ``threshold_<t>`` is p > t).
        solvers: rankseg solvers, run with ``pruning_prob``.
        pruning_prob: 0 (pruning off) as in the reference.
        chunk: Maps per solver call.
        device: Where the solvers and expected Dice run (maps are drawn on the CPU).
        log: Progress callback taking one string.

    Returns:
        ``(per_image, summary, seconds)``: per_image has ``image, rho`` and one expected-Dice column per rule;
        summary has ``rule, n, mean_expected_dice, se`` (se = sample std / sqrt(n)); seconds is the total
        solver time per rule, plus ``expected_metric`` (all rules together).
    """
    rules = _ex2_rules(thresholds, solvers)
    gen = torch.Generator().manual_seed(seed)
    probs_all, rho = example2_maps(n_images, gen, width=width)
    scores = []
    seconds = dict.fromkeys([*rules, "expected_metric"], 0.0)
    for start in range(0, n_images, chunk):
        probs = probs_all[start : start + chunk].to(device)
        preds = []
        for rule in rules:
            t0 = time.perf_counter()
            preds.append(predict(probs, rule, pruning_prob))
            if probs.device.type == "cuda":
                torch.cuda.synchronize()
            seconds[rule] += time.perf_counter() - t0
        t0 = time.perf_counter()
        scores.append(_expected_dice_dedup(probs, torch.stack(preds)).cpu())
        seconds["expected_metric"] += time.perf_counter() - t0
        log(f"  images {start}..{min(start + chunk, n_images) - 1} done")
    values = torch.cat(scores, dim=1).numpy()  # (R, n_images)
    per_image = pd.DataFrame({"image": np.arange(n_images), "rho": rho.numpy()})
    for i, rule in enumerate(rules):
        per_image[rule] = values[i]
    summary = pd.DataFrame(
        [
            dict(
                rule=rule,
                n=n_images,
                mean_expected_dice=per_image[rule].mean(),
                se=per_image[rule].std(ddof=1) / math.sqrt(n_images),
            )
            for rule in rules
        ]
    )
    return per_image, summary, seconds


def _expected_dice_dedup(probs: torch.Tensor, preds: torch.Tensor, rows_per_call: int = 16) -> torch.Tensor:
    """Exact expected Dice of several rules' masks of the same maps, each distinct mask computed once.

    Rules often agree (thresholds 0.2..0.5 all keep the foreground block), and the exact expectation costs far
    more than the comparison. An empty mask scores 0 by the convention (Dice of an empty prediction is 0 for
    every label draw, including the empty one), which is also what ``rankseg.expected_metric`` returns.

    Shape:
        probs (B, 1, H, W), preds (R, B, 1, H, W) bool -> (R, B) float64
    """
    n_rules, n = preds.shape[:2]
    flat = preds.flatten(2)  # (R, B, d)
    src = torch.full(
        (n_rules, n), -1, dtype=torch.long, device=preds.device
    )  # earlier rule with the same mask
    for i in range(n_rules):
        for j in range(i):
            same = (flat[i] == flat[j]).all(1) & (src[i] < 0)
            src[i][same] = j
    todo = (src < 0) & flat.any(2)  # (R, B): distinct, non-empty masks
    rule_idx, img_idx = todo.nonzero(as_tuple=True)
    values = torch.zeros((n_rules, n), dtype=torch.float64, device=preds.device)
    # Small calls keep the quadrature's per-node temporaries in cache: ~2-3x faster per row on CPU than one
    # call with hundreds of rows (measured with d = 4096).
    for k in range(0, len(img_idx), rows_per_call):
        r, b = rule_idx[k : k + rows_per_call], img_idx[k : k + rows_per_call]
        values[r, b] = expected_dice(probs[b], preds[r, b])
    for i in range(n_rules):
        copy = src[i] >= 0
        values[i, copy] = values[src[i, copy], copy.nonzero(as_tuple=True)[0]]
    return values


def summarise_by_rho(per_image: pd.DataFrame, n_bins: int = 10) -> pd.DataFrame:
    """Mean expected Dice and its standard error per rule within equal-width bins of rho.

    Returns:
        Columns ``rho_lo, rho_hi, rule, n, mean_expected_dice, se`` (se NaN for a bin of one image).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(per_image["rho"].to_numpy(), edges) - 1, 0, n_bins - 1)
    rules = [c for c in per_image.columns if c not in ("image", "rho")]
    rows = []
    for b in range(n_bins):
        sel = per_image[bins == b]
        for rule in rules:
            n = len(sel)
            se = sel[rule].std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
            rows.append(
                dict(
                    rho_lo=round(edges[b], 6),
                    rho_hi=round(edges[b + 1], 6),
                    rule=rule,
                    n=n,
                    mean_expected_dice=sel[rule].mean() if n else math.nan,
                    se=se,
                )
            )
    return pd.DataFrame(rows)


def cutoff_grid(
    betas: Sequence[float] = tuple(round(0.1 * k, 1) for k in range(1, 8)),
    rhos: Sequence[float] = tuple(round(0.1 * k, 1) for k in range(1, 9)),
    width: int = 64,
    seed: int = 0,
    solver: str = "exact",
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The probability cut-off implied by the Dice-optimal rule, one seeded map per (beta, rho) cell.

    The map is Example 2's with background on [beta, beta + 0.1] and a block of side int(rho * width); the
    value is p_(tau + 1), the largest probability the rule leaves out (NaN if it selects every pixel).

    Returns:
        Columns ``beta, rho, tau, last_included, cutoff`` (``last_included`` = p_(tau), NaN if tau = 0).
    """
    gen = torch.Generator().manual_seed(seed)
    cells = [(b, r) for b in betas for r in rhos]
    maps = [example2_maps(1, gen, width=width, beta=b, rho=torch.tensor([r]))[0] for b, r in cells]
    probs = torch.cat(maps).to(device)
    pred = predict(probs, solver, pruning_prob=0.0)
    flat = probs.flatten(1).double().cpu()
    tau = pred.flatten(1).sum(1).cpu()
    srt = flat.sort(dim=1, descending=True).values
    d = flat.shape[1]
    pad = torch.cat(
        [
            torch.full((len(cells), 1), math.nan, dtype=torch.float64),
            srt,
            torch.full((len(cells), 1), math.nan, dtype=torch.float64),
        ],
        dim=1,
    )
    last_included = pad.gather(1, tau[:, None]).squeeze(1)  # pad[tau] = p_(tau), NaN at tau = 0
    cutoff = pad.gather(1, (tau + 1)[:, None]).squeeze(1)  # pad[tau + 1] = p_(tau + 1), NaN at tau = d
    assert int(tau.max()) <= d
    return pd.DataFrame(
        dict(
            beta=[c[0] for c in cells],
            rho=[c[1] for c in cells],
            tau=tau.numpy(),
            last_included=last_included.numpy(),
            cutoff=cutoff.numpy(),
        )
    )


def plot_cutoff_heatmap(grid: pd.DataFrame, path) -> None:
    """Save the cut-off heatmap: rows = background level beta (y axis), columns = rho (x axis).

    The reference plot labels the y axis rho although its rows are beta; here the labels follow the data.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = grid.pivot(index="beta", columns="rho", values="cutoff")
    values = table.to_numpy()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", origin="lower")
    ax.set_xticks(range(len(table.columns)), [f"{c:.1f}" for c in table.columns])
    ax.set_yticks(range(len(table.index)), [f"{b:.1f}" for b in table.index])
    ax.set_xlabel(r"$\rho$ (foreground block side / image side)")
    ax.set_ylabel(r"background level $\beta$ (background $p \in [\beta, \beta + 0.1]$)")
    ax.set_title(
        "Probability of the first pixel excluded by the Dice-optimal rule\n"
        "('all': every pixel is selected, no pixel is excluded)",
        fontsize=10,
    )
    mid = np.nanmean(values) if np.isfinite(values).any() else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(
                j,
                i,
                "all" if np.isnan(v) else f"{v:.2f}",
                ha="center",
                va="center",
                color="k" if np.isnan(v) or v > mid else "w",
                fontsize=9,
            )
    fig.colorbar(im, ax=ax, label="cut-off probability")
    fig.tight_layout()

    from rankseg.experiments._io import atomic_write

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
