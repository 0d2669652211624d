"""Exact expected Dice / IoU under independent Bernoulli labels, and the exact RankSEG solver.

Model: Y_i ~ Bernoulli(p_i) independently, prediction A with |A| = tau, TP = sum_{i in A} Y_i,
Gamma = sum_i Y_i, FN = Gamma - TP, smoothing s.

    Dice_s = (2 TP + s) / (tau + Gamma + s)      IoU_s = (TP + s) / (tau + FN + s)

A 0/0 term (s = 0, empty prediction and empty truth) counts as 0, the JMLR simulation convention.
With G(t) = prod_i (1 - p_i y), y = 1 - e^(-t), and E[1/(a + X)] = int e^(-a t) E[e^(-t X)] dt
(see :mod:`rankseg._quadrature`):

    E[Dice_s(A)] = 2 int e^(-(tau+1+s) t) G(t) H_A(t) dt + s int e^(-(tau+s) t) G(t) dt,
                   H_A(t) = sum_{j in A} p_j / (1 - p_j y)   (as E[Y_j / (c + Gamma)] = p_j E[1/(c + 1 + Gamma_-j)])
    E[IoU_s(A)]  = (S_A + s) int e^(-(tau+s) t) Q_A(t) dt,  Q_A(t) = prod_{i not in A} (1 - p_i y)
                   (TP and FN are independent)

For top-tau sets H and log Q are prefix sums over the sorted probabilities, so every tau is scored at once.
The solver only scores tau in a window that provably contains the optimum: by Jensen the RMA score is a lower
bound of the exact score at every tau, and second-order bounds on E[1/(a+X)] (:func:`_reciprocal_gap`) give an
upper bound; tau whose upper bound is below the best exact score cannot be optimal.

At smooth 0 (:func:`_band_masks`) the window is found without sorting: it lies around the RMA cut, which
:mod:`rankseg._band` brackets by one pass; only the band of pixels around it is gathered and sorted, the exact
scores of its ranks come from power sums (of the whole row for G, of the pixels above the band, and prefix
power sums over the band), and concavity of the RMA objective certifies the ranks outside the band. Rows it
cannot certify, and smoothed metrics, sort their rows (:func:`_exact_tau`). Pixels far from the window enter
only through sum_i log(1 - p_i y), from power sums of their probabilities.

The band path's power sums (of the whole row, m = 2 .. M, and of the pixels above the band, m = 1 .. M') are
fixed-point integer sums on every path (:func:`_band_power_sums`); on CUDA they are one fused Triton read
(:func:`rankseg._triton.exact.row_powers`).

On CUDA (float32, triton importable) the whole smooth-0 solver runs as fused Triton passes instead
(:func:`rankseg._triton.exact.exact_masks`, called by :func:`exact_row_masks`): the window of ranks comes from a
per-row histogram with the same bounds (RMA times 1 + eps), the band is scored by the same quadrature in blocks of
ranks, and one host sync sizes the buffers. Rows it does not take go through the torch code here, which stays
the reference; the tests check the two against each other and against fully sorted rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rankseg import _triton
from rankseg._band import (
    SCORE_SLACK,
    Band,
    Ratio,
    above_band,
    band_for_bracket,
    mask_at_rank,
    power_sums,
    ragged_count_sum,
    ratio_bracket,
    start_score,
    superlevel_inside,
)
from rankseg._common import (
    as_rows,
    cache_blocks,
    count_true,
    fixed_bits,
    masks_by_chunks,
    row_chunks,
    row_sums64,
    scratch,
    sort_descending,
    threshold_below,
    top_tau_mask,
    use_numpy,
)
from rankseg._quadrature import nodes
from rankseg._validation import check_prob_values, check_probs_structure, check_smooth

__all__ = ["expected_metric"]

_F64 = torch.float64
_TINY = 1e-300
# Probabilities above this are always handled directly; the power series of log(1 - p y) for smaller ones
# needs at most ~35 terms for 1e-17 accuracy.
_SERIES_MAX_P = 0.33
# Rows whose nodes keep y = 1 - e^(-t) below this are summed as power series in p y (<= 40 terms).
_SERIES_MAX_Y = 0.38


def _one_minus_py(p: torch.Tensor, emt: torch.Tensor) -> torch.Tensor:
    """1 - p y = (1 - p) + p e^(-t), written without cancellation (p = 1 at large t)."""
    return ((1 - p) + p * emt).clamp_min(_TINY)


def _empty_score(w: torch.Tensor, t: torch.Tensor, log_g: torch.Tensor, log_p0: torch.Tensor, s: float):
    """s E[1 / (s + Gamma)], the score of an empty prediction, as P0 + s int e^(-s t) (G - P0) dt.

    P0 = P(Gamma = 0). The split leaves an integrand that decays like e^(-(1 + s) t), so the nodes made for
    a_min = 1 + s integrate it; the subtraction loses nothing that matters because it is multiplied by s.

    Shape:
        w, t, log_g: (r, K).  log_p0: (r,).  output: (r,).
    """
    p0 = torch.exp(log_p0)
    if s == 0:
        return torch.zeros_like(p0)
    return p0 + s * (w * torch.exp(-s * t) * (torch.exp(log_g) - p0.unsqueeze(1))).sum(1)


def _set_node_sums(
    p: torch.Tensor, mask: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log G, H_A and sum_{i in A} log(1 - p_i y) at every node, for arbitrary sets A.

    Rows whose nodes all have small y = 1 - e^(-t) (large sets: their integrands decay fast) use power sums
    of p over the row and over A (a few passes, then small matrix products); the others are evaluated node by
    node.

    Shape:
        p: (r, d) float64.  mask: (r, d) bool.  t: (r, K).
        output: three (r, K) float64 tensors.
    """
    log_g = torch.empty_like(t)
    h = torch.empty_like(t)
    log_a = torch.empty_like(t)
    y = -torch.expm1(-t)
    y_max = y.amax(1) if t.shape[1] else torch.zeros(t.shape[0], dtype=t.dtype, device=t.device)
    series = y_max <= _SERIES_MAX_Y
    if bool(series.any()):
        ids = series.nonzero().squeeze(1)
        terms = max(1, math.ceil(math.log(1e-17) / math.log(max(float(y_max[ids].max()), 1e-300))))
        ps, ms, ys = p[ids], mask[ids], y[ids]
        total = torch.empty(ids.numel(), terms + 1, dtype=_F64, device=p.device)
        in_set = torch.empty_like(total)
        q = ps.clone()
        for m in range(terms + 1):  # P_m over the row and over A, m = 1 .. terms + 1
            total[:, m] = q.sum(1)
            in_set[:, m] = torch.where(ms, q, 0).sum(1)
            if m < terms:
                q.mul_(ps)
        del q
        powers = torch.arange(terms + 1, device=p.device, dtype=_F64)
        y_pow = ys.unsqueeze(2) ** powers  # (n, K, terms + 1): y^0 .. y^terms
        inv_m = 1 / (powers[:terms] + 1)
        log_g[ids] = -torch.einsum("nm,nkm->nk", total[:, :terms] * inv_m, y_pow[:, :, 1:])
        log_a[ids] = -torch.einsum("nm,nkm->nk", in_set[:, :terms] * inv_m, y_pow[:, :, 1:])
        h[ids] = torch.einsum("nm,nkm->nk", in_set, y_pow)
    if bool((~series).any()):
        ids = (~series).nonzero().squeeze(1)
        ps, ms, emt = p[ids], mask[ids], torch.exp(-t[ids])
        lg_out, la_out, h_out = (torch.empty_like(emt) for _ in range(3))
        for k in range(t.shape[1]):  # a loop over quadrature nodes, vectorised over rows and pixels
            one = _one_minus_py(ps, emt[:, k : k + 1])
            lg = torch.log(one)
            lg_out[:, k] = lg.sum(1)
            la_out[:, k] = torch.where(ms, lg, 0).sum(1)
            h_out[:, k] = torch.where(ms, ps / one, 0).sum(1)
        log_g[ids], log_a[ids], h[ids] = lg_out, la_out, h_out
    return log_g, h, log_a


def _fast_node_sums(
    rows: torch.Tensor, mask: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_set_node_sums` for the multiclass increments: row power sums by float32 passes through the
    scratch buffer and power sums over A from its gathered pixels, for the rows whose nodes keep y small;
    the others go through :func:`_set_node_sums` (float64, node by node where needed).

    Shape:
        rows: (r, d) compute dtype.  mask: (r, d) bool.  t: (r, K).  output: three (r, K) float64 tensors.
    """
    r, d = rows.shape
    y = -torch.expm1(-t)
    y_max = y.amax(1) if t.shape[1] else torch.zeros(r, dtype=_F64, device=t.device)
    series = y_max <= _SERIES_MAX_Y
    log_g = torch.empty_like(t)
    h = torch.empty_like(t)
    log_a = torch.empty_like(t)
    if bool(series.any()):
        y_top = max(float(y_max[series].max()), 1e-300)
        terms = max(1, min(60, math.ceil(math.log(1e-15) / math.log(y_top))))
        ids = series.nonzero().squeeze(1)
        # the passes run over every row (row copies would cost more memory than the few extra rows)
        p = rows.contiguous()
        total = torch.empty(r, terms + 1, dtype=_F64, device=t.device)
        work = scratch(p.shape, p.dtype, p.device)
        q = work.copy_(p)
        for m in range(terms + 1):  # P_m over the row, m = 1 .. terms + 1
            total[:, m] = q.sum(1).to(_F64)
            if m < terms:
                q.mul_(p)
        del q, work
        sel = mask.contiguous()
        counts = count_true(sel, 1)
        starts = torch.cat([torch.zeros_like(counts[:1]), counts.cumsum(0)])
        if use_numpy(p):
            in_vals = torch.from_numpy(p.numpy().reshape(-1)[np.flatnonzero(sel.numpy())])
        else:
            in_vals = p.reshape(-1)[sel.reshape(-1)]
        in_set = power_sums(in_vals, starts, terms + 1)[ids]
        del in_vals
        total = total[ids]
        ys = y[ids]
        y_pow = torch.empty(*ys.shape, terms + 1, dtype=_F64, device=t.device)  # y^0 .. y^terms
        y_pow[:, :, 0] = 1
        for m in range(1, terms + 1):
            torch.mul(y_pow[:, :, m - 1], ys, out=y_pow[:, :, m])
        inv_m = 1 / torch.arange(1, terms + 1, device=t.device, dtype=_F64)
        log_g[ids] = -torch.einsum("nm,nkm->nk", total[:, :terms] * inv_m, y_pow[:, :, 1:])
        log_a[ids] = -torch.einsum("nm,nkm->nk", in_set[:, :terms] * inv_m, y_pow[:, :, 1:])
        h[ids] = torch.einsum("nm,nkm->nk", in_set, y_pow)
    if bool((~series).any()):
        ids = (~series).nonzero().squeeze(1)
        for sl in row_chunks(ids.numel(), d * 56, rows.numel() * rows.element_size(), rows.device):
            sub = ids[sl]
            log_g[sub], h[sub], log_a[sub] = _set_node_sums(rows[sub].to(_F64), mask[sub], t[sub])
    return log_g, h, log_a


def _masked_sums(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float64 (r,) sums of each row's entries where ``mask`` is True, without a row-sized temporary on CPU."""
    if use_numpy(rows) and rows.is_contiguous() and mask.is_contiguous():
        return torch.from_numpy(np.add.reduce(rows.numpy(), axis=1, where=mask.numpy(), dtype=np.float64))
    return row_sums64(rows, mask)


def _expected_rows(p: torch.Tensor, mask: torch.Tensor, metric: str, smooth: float) -> torch.Tensor:
    """Exact expected metric of arbitrary masks, one value per row. Shape: (r, d), (r, d) -> (r,)."""
    s = smooth
    tau = count_true(mask, 1).to(_F64)
    mu = p.sum(1)
    empty = tau == 0
    # Every integrand below decays at rate >= 1 + s except the empty prediction's s E[1/(s + Gamma)],
    # which is rewritten as P(Gamma = 0) + s int e^(-s t) (G - P(Gamma = 0)) dt: G - P0 decays like e^(-t).
    t, w = nodes(p.shape[1], mu, s, torch.where(empty, 1 + s, tau + s))
    log_g, h, log_a = _set_node_sums(p, mask, t)
    tau_ = tau.unsqueeze(1)
    if metric == "dice":
        val = 2 * (w * torch.exp(-(tau_ + 1 + s) * t + log_g) * h).sum(1)
    else:
        total = torch.where(mask, p, 0).sum(1)
        val = (total + s) * (w * torch.exp(-(tau_ + s) * t + log_g - log_a)).sum(1)
        val = torch.where(empty, torch.zeros_like(val), val)
    if s > 0:
        empty_score = _empty_score(w, t, log_g, torch.log1p(-p).sum(1), s)
        if metric == "dice":
            val = val + torch.where(empty, empty_score, s * (w * torch.exp(log_g - (tau_ + s) * t)).sum(1))
        else:
            val = torch.where(empty, empty_score, val)
    return val


def _masks_from_preds(preds: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n_img, n_cls = shape[:2]
    if not isinstance(preds, torch.Tensor):
        raise TypeError("preds must be a torch.Tensor")
    if tuple(preds.shape) == tuple(shape):
        if preds.dtype != torch.bool:
            raise TypeError(
                "preds with shape (B, C, *spatial) must be bool masks; pass a label map (B, *spatial) "
                "for class indices"
            )
        return preds
    if tuple(preds.shape) == (n_img,) + tuple(shape[2:]):
        if preds.dtype.is_floating_point or preds.dtype.is_complex or preds.dtype == torch.bool:
            raise TypeError("a label map must have an integer dtype")
        classes = torch.arange(n_cls, device=preds.device).view(1, n_cls, *([1] * (len(shape) - 2)))
        return preds.unsqueeze(1) == classes
    raise ValueError(
        f"preds must be bool masks of shape {tuple(shape)} or a label map of shape "
        f"{(n_img,) + tuple(shape[2:])}; got {tuple(preds.shape)}"
    )


def expected_metric(
    probs: torch.Tensor, preds: torch.Tensor, metric: str = "dice", smooth: float = 0.0
) -> torch.Tensor:
    """Exact expected per-image, per-class Dice or IoU of a prediction under the RankSEG model.

    Labels are independent Bernoulli(probs). With ``smooth=0`` an empty prediction of a class that is also
    absent from the sampled truth scores 0 (the simulation convention of the JMLR paper), so an empty
    prediction always has expected score 0. Accurate to about 1e-10 (composite Gauss-Legendre quadrature).

    Args:
        probs: probabilities (B, C, *spatial) in [0, 1].
        preds: bool masks (B, C, *spatial), or an integer label map (B, *spatial) (labels outside [0, C),
            e.g. a void label, belong to no class).
        metric: "dice" or "iou".
        smooth: smoothing constant s >= 0.

    Returns:
        float64 tensor (B, C) on the input's device.
    """
    check_probs_structure(probs)
    if not isinstance(metric, str) or metric.strip().lower() not in ("dice", "iou"):
        raise ValueError(f"metric must be 'dice' or 'iou', got {metric!r}")
    metric = metric.strip().lower()
    smooth = check_smooth(smooth)
    with torch.no_grad():
        masks = _masks_from_preds(preds, probs.shape)
        if masks.device != probs.device:
            raise ValueError(f"preds is on {masks.device} but probs is on {probs.device}; move them together")
        check_prob_values(probs)
        rows = as_rows(probs)
        mrows = masks.reshape(rows.shape)
        out = torch.zeros(rows.shape[0], dtype=_F64, device=rows.device)
        input_bytes = rows.numel() * rows.element_size()
        for sl in row_chunks(rows.shape[0], rows.shape[1] * 56, input_bytes, rows.device):
            out[sl] = _expected_rows(rows[sl].to(_F64), mrows[sl], metric, smooth)
        return out.reshape(probs.shape[:2])


# ---------------------------------------------------------------------------------------------- solver


def _tail_log_g(tail: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_i log(1 - p_i y) over small probabilities from their power sums: -sum_m P_m y^m / m.

    Shape:
        tail: (r, n) float64 with every value <= _SERIES_MAX_P.  y: (r, K).  output: (r, K).
    """
    if tail.shape[1] == 0:
        return torch.zeros_like(y)
    pmax = float(tail.amax()) if tail.numel() else 0.0
    if pmax <= 0:
        return torch.zeros_like(y)
    terms = max(1, min(80, math.ceil(math.log(1e-18) / math.log(pmax))))
    out = torch.zeros_like(y)
    q = tail.clone()
    y_pow = y.clone()
    for m in range(1, terms + 1):
        out -= q.sum(1, keepdim=True) * y_pow / m
        if m < terms:
            q.mul_(tail)
            y_pow = y_pow * y
    return out


def _bounds(vals: torch.Tensor, metric: str, smooth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last tau (>= 1) that can be optimal, per row (rows sorted descending, float64).

    Lower bound (Jensen): E[1/(a + X)] >= 1/(a + E X), which makes the RMA score a lower bound of the exact
    score at every tau. Upper bound: 1/(a+X) = 1/(a+m) - (X-m)/(a+m)^2 + (X-m)^2/((a+m)^2 (a+X)) gives
    E[1/(a + X)] <= 1/(a + m) + Var X / (a (a + m)^2). A tau whose upper bound is below the best lower bound
    (tau = 0 included) cannot be optimal. Rows with no candidate get first = d, last = 0. The third output says
    whether the empty prediction (tau = 0, smooth > 0 only) can be optimal.
    """
    s = smooth
    cums = vals.cumsum(1)
    mu = cums[:, -1:]
    var = (vals * (1 - vals)).sum(1, keepdim=True)
    tau = torch.arange(1, vals.shape[1] + 1, device=vals.device, dtype=_F64).unsqueeze(0)

    def recip_upper(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return 1 / (a + m) + var / (a * (a + m) ** 2)

    if metric == "dice":
        # Gamma_-j has mean >= mu - 1 and variance <= var; the bound is decreasing in m.
        lower = 2 * cums / (tau + 1 + s + mu) + s / (tau + s + mu)
        upper = 2 * cums * recip_upper(tau + 1 + s, (mu - 1).clamp_min(0)) + s * recip_upper(tau + s, mu)
    else:
        m = (mu - cums).clamp_min(0)
        lower = (cums + s) / (tau + s + m)
        upper = (cums + s) * recip_upper(tau + s, m)
    mu0 = mu.squeeze(1)
    lower0 = s / (s + mu0) if s > 0 else torch.zeros_like(mu0)
    best = torch.maximum(lower.amax(1), lower0)
    ok = upper >= best.unsqueeze(1) * (1 - 1e-9)
    last = torch.where(ok, tau, torch.zeros_like(tau)).amax(1)
    first = torch.where(ok, tau, torch.full_like(tau, float(vals.shape[1] + 1))).amin(1)
    # the empty prediction scores s E[1/(s + Gamma)] <= s * recip_upper(s, mu)
    empty_ok = (s * recip_upper(torch.full_like(mu, max(s, 1e-300)), mu)).squeeze(1) >= best * (1 - 1e-9)
    empty_ok = empty_ok & (s > 0)
    return first.clamp_max(vals.shape[1]).to(torch.int64), last.to(torch.int64), empty_ok


_MAX_TERMS = 40


def _exact_tau(vals: torch.Tensor, metric: str, smooth: float) -> torch.Tensor:
    """Exact optimal tau per row from rows sorted in descending order (float64). Ties: smaller tau.

    Only tau in each row's window [first, last] (see :func:`_bounds`) is scored. Every term of those scores
    carries e^(-a t) with a >= first + s, so the quadrature nodes stop at t_hi = 38 / (first + s) and
    y = 1 - e^(-t) stays small when the window starts far from 0. Then log(1 - p y) = -sum_m (p y)^m / m and
    p / (1 - p y) = sum_m p^(m+1) y^m converge fast for every p in [0, 1], and all nodes and all tau are
    obtained from a few power sums of the probabilities (prefix sums over the sorted row for tau) and small
    matrix products. Windows close to 0 (small objects) use the direct per-node evaluation instead.

    Shape:
        vals: (r, d) float64.  output: (r,) int64.
    """
    s = smooth
    r, d = vals.shape
    first, last, empty_ok = _bounds(vals, metric, smooth)
    width = int((last - first + 1).clamp_min(0).max()) if r else 0
    mu = vals.sum(1)
    t, w = nodes(d, mu, s, first.to(_F64) + s)
    y = -torch.expm1(-t)
    y_max = float(y.max()) if y.numel() else 0.0
    terms = math.ceil(math.log(1e-17) / math.log(y_max)) if 0 < y_max < 1 else _MAX_TERMS + 1
    if width == 0 or terms > _MAX_TERMS:
        best = _exact_tau_direct(vals, metric, smooth, first, last)
    else:
        best = _window_scores_series(vals, metric, s, first, last, width, t, w, y, terms)
    if bool(empty_ok.any()):  # rare: only tiny masses with smooth > 0 can prefer an empty prediction
        ids = empty_ok.nonzero().squeeze(1)
        sub = vals[ids]
        t0, w0 = nodes(d, mu[ids], s, 1 + s)
        log_g0, _, _ = _set_node_sums(sub, torch.zeros_like(sub, dtype=torch.bool), t0)
        e0 = _empty_score(w0, t0, log_g0, torch.log1p(-sub).sum(1), s)
        tau_b = best[ids]
        mask = torch.arange(d, device=vals.device).unsqueeze(0) < tau_b.unsqueeze(1)
        score_b = _expected_rows(sub, mask, metric, s)
        best[ids] = torch.where(e0 >= score_b, torch.zeros_like(tau_b), tau_b)
    return best


def _window_scores_series(vals, metric, s, first, last, width, t, w, y, terms) -> torch.Tensor:
    """Best tau in each row's window, all nodes and tau at once from power sums (see :func:`_exact_tau`)."""
    r, d = vals.shape
    hi = int(last.max())
    powers = torch.arange(1, terms + 2, device=vals.device, dtype=_F64)  # m = 1 .. terms + 1
    # totals P_m = sum_i p_i^m over the whole row, and prefix sums over the top hi pixels
    total = torch.empty(r, terms + 1, dtype=_F64, device=vals.device)
    q = vals.clone()
    for m in range(terms + 1):
        total[:, m] = q.sum(1)
        if m < terms:
            q.mul_(vals)
    del q
    top = vals[:, :hi]
    prefix = (top.unsqueeze(2) ** powers).cumsum(1)  # (r, hi, terms + 1)
    tau = first.unsqueeze(1) + torch.arange(width, device=vals.device).unsqueeze(0)  # (r, W)
    valid = tau <= last.unsqueeze(1)
    idx = (tau.clamp_max(hi) - 1).clamp_min(0)
    pre = prefix.gather(1, idx.unsqueeze(2).expand(-1, -1, terms + 1))  # (r, W, terms + 1): sums up to tau
    y_pow = y.unsqueeze(2) ** (powers - 1)  # (r, K, terms + 1): y^0 .. y^terms
    inv_m = 1 / powers[:terms]
    log_g = -(total[:, :terms] * inv_m).unsqueeze(1).mul(y_pow[:, :, 1:]).sum(2)  # (r, K)
    tau_f = tau.to(_F64).unsqueeze(2)  # (r, W, 1)
    tk, wk, lgk = t.unsqueeze(1), w.unsqueeze(1), log_g.unsqueeze(1)
    if metric == "dice":
        h = torch.einsum("rwm,rkm->rwk", pre, y_pow)  # sum_{j<=tau} p_j / (1 - p_j y)
        # s e^t is folded into the exponent: e^t overflows at the far nodes of a batch (0 * inf would be NaN)
        score = (wk * (torch.exp(lgk - (tau_f + 1 + s) * tk) * (2 * h) + s * torch.exp(lgk - (tau_f + s) * tk))).sum(2)
    else:
        # log prod_{j<=tau} (1 - p_j y) = -sum_m y^m/m sum_{j<=tau} p_j^m
        log_a = -torch.einsum("rwm,rkm->rwk", pre[:, :, :terms] * inv_m, y_pow[:, :, 1:])
        score = (wk * torch.exp(lgk - log_a - (tau_f + s) * tk)).sum(2) * (pre[:, :, 0] + s)
    score = score.masked_fill(~valid, -torch.inf)
    return tau.gather(1, score.argmax(1, keepdim=True)).squeeze(1)


def _exact_tau_direct(vals, metric, smooth, first, last) -> torch.Tensor:
    """Best tau in [min first, max last] by direct evaluation at each node (any window, any y)."""
    s = smooth
    r, d = vals.shape
    hi = int(last.max()) if r else 0
    lo = min(int(first.min()), hi) if hi > 0 else 1
    width = hi - lo + 1 if hi > 0 else 0
    if width == 0:
        return torch.zeros(r, dtype=torch.int64, device=vals.device)
    # Prefix handled directly: up to the window's end, plus every probability too large for the power series.
    n_big = int((vals > _SERIES_MAX_P).sum(1).max())
    pre = max(hi, n_big)
    top, tail = vals[:, :pre], vals[:, pre:]
    t, w = nodes(d, vals.sum(1), s, 1 + s)
    emt = torch.exp(-t)
    log_g = _tail_log_g(tail, -torch.expm1(-t))
    tau = torch.arange(lo, lo + width, device=vals.device, dtype=_F64).unsqueeze(0)
    score = torch.zeros(r, width, dtype=_F64, device=vals.device)
    for k in range(t.shape[1]):  # quadrature nodes; each step is vectorised over rows and tau
        tk, wk = t[:, k : k + 1], w[:, k : k + 1]
        lg = torch.log(_one_minus_py(top, emt[:, k : k + 1]))
        log_g[:, k] += lg.sum(1)
        lgk = log_g[:, k : k + 1]
        if metric == "dice":
            hk = (top[:, :hi] / _one_minus_py(top[:, :hi], emt[:, k : k + 1])).cumsum(1)[:, lo - 1 :]
            # s e^t folded into the exponent: a batch's node count comes from its widest row, so a row of small
            # mass gets nodes far past its own range, where e^t overflows (0 * inf would be NaN)
            score += wk * (torch.exp(lgk - (tau + 1 + s) * tk) * (2 * hk) + s * torch.exp(lgk - (tau + s) * tk))
        else:
            score += wk * torch.exp(lgk - lg[:, :hi].cumsum(1)[:, lo - 1 :] - (tau + s) * tk)
    if metric == "iou":
        score = score * (top[:, :hi].cumsum(1)[:, lo - 1 :] + s)
    return score.argmax(1) + lo


# Band path: the power series of log(1 - p y) and p / (1 - p y) are truncated where the remainder is below
# this in log G; the float32 power sums themselves carry up to ~1e-6 relative error (the input's precision).
_SERIES_TOL = 1e-8
# Band path: rows whose quadrature nodes reach y = 1 - e^-t above this use the sort path (tiny objects).
_BAND_MAX_Y = 0.3
# Band path: rows with less expected mass than this use the sort path (the window bound is loose there).
_BAND_MIN_MASS = 64.0


def _reciprocal_gap(var: torch.Tensor, a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """eps with E[1/(a + X)] <= (1 + eps) / (a + m) for a Poisson-binomial X of mean >= m and variance <= var.

    From 1/(a+X) = 1/(a+m) - (X-m)/(a+m)^2 + (X-m)^2 / ((a+m)^2 (a+X)): either a + X >= a, giving
    eps = V / ((a + m) a), or a split at X = (1 - delta) m with the Chernoff bound
    P(X < (1 - delta) m) <= e^(-delta^2 m / 2) (and (X - m)^2 <= m^2 below it), giving
    eps = V / ((a + m) (a + (1 - delta) m)) + m^2 e^(-delta^2 m / 2) / (a (a + m)), with delta chosen so that
    the tail term is e^-40-small. The smaller of the two is returned; it decreases in a and, for the second
    form, in m.
    """
    m = m.clamp_min(0)
    delta = (80 / m.clamp_min(1)).sqrt().clamp_max(1.0)
    tail = m * m * torch.exp(-delta * delta * m / 2) / (a * (a + m))
    split = var / ((a + m) * (a + (1 - delta) * m)) + tail
    return torch.minimum(var / ((a + m) * a.clamp_min(1e-300)), split)


def _score_gap(metric: str, mu, var, tau, total, squares=None) -> torch.Tensor:
    """eps(tau) with exact(tau) <= RMA(tau) (1 + eps(tau)) at smooth 0.

    Dice: exact = sum_j 2 p_j E[1/(a + Gamma_-j)], a = tau + 1, Gamma_-j of mean mu - p_j >= mu - 1, and
    sum_j p_j / (a + mu - p_j) <= (S + Q / (a + mu - 1)) / (a + mu) with Q = sum_j p_j^2 (``squares``,
    default Q = S, i.e. Q / S <= 1; Q / S never grows with tau, so eps(tau) also bounds larger tau given the
    Q / S of tau). IoU: exact = S E[1/(tau + FN)], FN of mean mu - S_tau (``total`` is S_tau) and variance
    <= var; valid at that tau (the bounds of the ranges outside the band are in :func:`_outside_gaps`).
    """
    if metric == "dice":
        a = tau + 1
        ratio = 1.0 if squares is None else squares / total.clamp_min(1e-300)
        return (1 + _reciprocal_gap(var, a, mu - 1)) * (1 + ratio / (a + mu - 1)) - 1
    return _reciprocal_gap(var, tau.clamp_min(1), mu - total)


def _outside_gaps(metric: str, mu, var, s_top, n_lo, p_max=None, s_low=None, q_low=None):
    """eps for every tau above the band (tau < n_hi, whose S_tau <= s_top) and below it (tau > n_lo).

    Dice: eps at tau = 0 with Q / S <= p_max, and eps at tau = n_lo + 1 with the Q / S of the band's last
    rank (``s_low``, ``q_low``; Q / S <= 1 without them). IoU: above the band a = tau >= 1 and FN's mean is
    at least mu - s_top; below it a >= n_lo + 1 and FN's mean is only known to be >= 0, where
    V / ((a + m) a) <= var / (n_lo + 1)^2.
    """
    if metric == "dice":
        one = torch.ones_like(mu)
        top = _score_gap(metric, mu, var, torch.zeros_like(mu), one, p_max)
        low = _score_gap(metric, mu, var, (n_lo + 1).to(_F64), one if s_low is None else s_low, q_low)
        return top, low
    left = _reciprocal_gap(var, torch.ones_like(mu), mu - s_top)
    return left, var / (n_lo.to(_F64) + 1) ** 2


def _prefix_powers(band: Band, terms: int, width: int) -> torch.Tensor:
    """Prefix power sums B_m(j) = sum_{i<=j} b_i^m of each row's sorted band values, m = 1 .. terms + 1.

    Shape:
        output: (terms + 1, r, width + 1) float64, j = 0 .. width (the -1 padding counts as 0).
    """
    r = band.vals.shape[0]
    b = band.vals[:, :width].to(_F64).clamp_min(0)
    pre = torch.empty(terms + 1, r, width + 1, dtype=_F64, device=b.device)
    pre[:, :, 0] = 0
    pre[0, :, 1:] = b
    for m in range(1, terms + 1):
        torch.mul(pre[m - 1, :, 1:], b, out=pre[m, :, 1:])
    return pre.cumsum_(2)


def _band_scores(pre, band: Band, metric: str, t, log_w, log_g, hi_sums, y_pow, j0, span: int) -> torch.Tensor:
    """Exact expected scores of tau = n_hi + j for j = j0 .. j0 + span - 1 of each row (smooth 0), float64.

    With the band's prefix power sums B_m(j) (:func:`_prefix_powers`), all nodes and all j come from batched
    matrix products: sum_{i<=j} b_i / (1 - b_i y) = sum_m B_(m+1)(j) y^m (Dice) and
    sum_{i<=j} log(1 - b_i y) = -sum_m B_m(j) y^m / m (IoU).

    Shape:
        pre: (terms + 1, r, W + 1).  t, log_w, log_g, hi_sums: (r, K).  y_pow: (r, K, terms + 1).
        j0: (r,) int64 first offsets.  output: (r, span).
    """
    terms = pre.shape[0] - 1
    dev = pre.device
    j = (j0.unsqueeze(1) + torch.arange(span, device=dev)).clamp_max(pre.shape[2] - 1)  # (r, span)
    sums = pre.gather(2, j.unsqueeze(0).expand(terms + 1, -1, -1)).permute(1, 2, 0)  # (r, span, terms + 1)
    tau = (band.n_hi.unsqueeze(1) + j).to(_F64)
    # (in place: two (r, span, K) temporaries at most)
    if metric == "dice":
        h = torch.bmm(sums, y_pow.transpose(1, 2)).add_(hi_sums.unsqueeze(1))  # (r, span, K)
        expo = (log_w + log_g).unsqueeze(1).expand_as(h).clone()
        expo.addcmul_((tau + 1).unsqueeze(2), t.unsqueeze(1), value=-1)
        return 2 * expo.exp_().mul_(h).sum(2)
    inv_m = 1 / torch.arange(1, terms + 1, device=dev, dtype=_F64)
    # -log prod over the band part (r, span, K), turned into the exponent in place
    expo = torch.bmm(sums[:, :, :terms] * inv_m, y_pow[:, :, 1:].transpose(1, 2))
    expo.add_((log_w + log_g - hi_sums).unsqueeze(1)).addcmul_(tau.unsqueeze(2), t.unsqueeze(1), value=-1)
    total = band.s_hi.unsqueeze(1) + sums[:, :, 0]  # S_tau
    return torch.where(total > 0, total * expo.exp_().sum(2), torch.zeros_like(total))


def _low_terms(mu: torch.Tensor, y: torch.Tensor, lo: torch.Tensor, terms: int) -> int:
    """Least M in [2, terms] with mu y x^M / ((M + 1) (1 - x)) <= the series tolerance in every row, x = lo y.

    Shape:
        mu, y, lo: (r,) float64 (rows of the band path).
    """
    if terms <= 2 or mu.numel() == 0:
        return min(terms, 2)
    x = (lo * y).clamp(0, 1 - 1e-12)
    m = torch.arange(2, terms + 1, dtype=_F64, device=mu.device)
    log_x = torch.log(x.clamp_min(1e-300)).unsqueeze(1)
    log_bound = torch.log((mu * y).clamp_min(1e-300) / (1 - x)).unsqueeze(1) + m * log_x - torch.log(m + 1)
    fits = (log_bound <= math.log(_SERIES_TOL)).all(0)
    return int(m[fits][0]) if bool(fits.any()) else terms


def _row_powers(p: torch.Tensor, work: torch.Tensor, out: torch.Tensor) -> None:
    """Row power sums out[:, k] = sum_j p_j^(k + 2), written into the float64 (r, M) view ``out``, order-free.

    The powers are float32 (the input's dtype) products q_2 = p p, q_m = q_(m-1) p; each is truncated to fixed
    point (2^fx units, :func:`rankseg._common.fixed_bits`; scaling by 2^fx is exact) and the integers are
    summed (int64), so the sums do not depend on the order of the additions: the Triton pass
    (:func:`rankseg._triton.exact.row_powers`, one read on CUDA) and this reference (one pass per power over
    cache-sized blocks of rows, :func:`rankseg._common.cache_blocks`, through the scratch tensor ``work``) give
    the same bits. The truncation costs under d 2^-fx (2^-20 up to d = 2^20) in each sum, far below the series
    tolerance's effect on log G.
    """
    r, d = p.shape
    n_pow = out.shape[1]
    fx = fixed_bits(d)
    scale = float(2**fx)
    if n_pow == 0:
        return
    if _triton.enabled(p) and n_pow <= _MAX_FUSED_POWERS:
        from rankseg._triton import exact as fused

        ints = fused.row_powers(p, n_pow, scale)[0]
    else:
        ints = torch.empty(r, n_pow, dtype=torch.int64, device=p.device)
        for rows in _power_blocks(p):
            block = p[rows]
            # q = p^(k + 2) 2^fx: the scaling commutes with the float32 rounding wherever p^(k + 2) >= 2^-fx
            # (normal numbers), and smaller powers truncate to 0 either way
            q = torch.mul(block, block, out=work[rows]).mul_(scale)
            for k in range(n_pow):
                if k:
                    q.mul_(block)
                if use_numpy(q) and q.is_contiguous():
                    ints[rows, k] = torch.from_numpy(q.numpy().astype(np.int64).sum(1))
                else:
                    ints[rows, k] = q.sum(1, dtype=torch.int64)  # each value truncated, then summed
    out.copy_(ints.to(_F64) * 2.0**-fx)


# the Triton pass's accumulator width (rankseg._triton.exact.MAX_POWERS)
_MAX_FUSED_POWERS = 64
# Values per block of :func:`_above_powers` (bounds its float64 temporaries): NumPy on CPU, torch.
_ABOVE_CHUNK = (2**17, 2**22)


def _above_powers(vals: torch.Tensor, starts: torch.Tensor, n_pow: int, scale: float) -> torch.Tensor:
    """Per-row int64 sums of trunc(x^m scale), m = 1 .. n_pow, over a ragged array of values (the pixels above
    the band, :func:`rankseg._band.above_band`; zeros add nothing), x^m by repeated float64 products.

    Shape:
        vals: (N,) in p's dtype.  starts: (r + 1,) int64 row offsets.  output: (n_pow, r) int64.
    """
    r = starts.numel() - 1
    acc = torch.zeros(n_pow, r, dtype=torch.int64, device=vals.device)
    n = vals.numel()
    if n == 0 or n_pow == 0:
        return acc
    host = use_numpy(vals)
    if host:
        out, st = acc.numpy(), starts.numpy()
    chunk = _ABOVE_CHUNK[0] if host else _ABOVE_CHUNK[1]
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        if host:  # NumPy on CPU: per-chunk segment sums (reduceat) of each power's integers
            xs = vals[c0:c1].numpy().astype(np.float64)
            r0 = int(np.searchsorted(st, c0, side="right")) - 1
            r1 = int(np.searchsorted(st, c1 - 1, side="right"))  # rows r0 .. r1 - 1 meet the chunk
            cuts = np.clip(st[r0 : r1 + 1], c0, c1) - c0
            idx, empty = np.minimum(cuts[:-1], c1 - c0 - 1), cuts[1:] == cuts[:-1]
            q = xs.copy()
            for m in range(n_pow):
                sums = np.add.reduceat((q * scale).astype(np.int64), idx)
                sums[empty] = 0
                out[m, r0:r1] += sums
                if m + 1 < n_pow:
                    q *= xs
            continue
        x = vals[c0:c1].to(_F64)
        row = torch.searchsorted(starts, torch.arange(c0, c1, device=vals.device), right=True) - 1
        q = x.clone()
        for m in range(n_pow):
            acc[m].index_add_(0, row, torch.mul(q, scale).to(torch.int64))  # truncated, then summed
            if m + 1 < n_pow:
                q.mul_(x)
    return acc


def _band_power_sums(
    p: torch.Tensor,
    work: torch.Tensor,
    hi: torch.Tensor,
    hi_vals: torch.Tensor | None,
    hi_starts: torch.Tensor | None,
    row_out: torch.Tensor,
    n_above: int,
) -> torch.Tensor:
    """The band path's power sums: row_out[:, k] = sum_j p_j^(k + 2) over the row (:func:`_row_powers`), and,
    returned as float64 (r, n_above), sum_(p_j > hi) p_j^m, m = 1 .. n_above, over the pixels above the band.

    Both are fixed-point integer sums (float32 products for the row, float64 products above the band, each
    truncated to 2^fx units before the sum, :func:`rankseg._common.fixed_bits`), so they do not depend on the
    order of the additions. With ``hi_vals`` None (CUDA) both come from one fused Triton read
    (:func:`rankseg._triton.exact.row_powers`); otherwise from :func:`_row_powers` and the gathered pixels above
    the band (``hi_vals``, ``hi_starts``, :func:`rankseg._band.above_band`).

    Shape:
        p: (r, d).  hi: (r,) the band's upper thresholds in p's dtype.  row_out: (r, M) float64 view.
    """
    r, d = p.shape
    fx = fixed_bits(d)
    unit = 2.0**-fx
    if hi_vals is None:
        from rankseg._triton import exact as fused

        if row_out.shape[1] > _MAX_FUSED_POWERS or n_above > _MAX_FUSED_POWERS:
            raise ValueError(f"at most {_MAX_FUSED_POWERS} powers per fused pass")
        ints, above = fused.row_powers(p, row_out.shape[1], float(2**fx), hi, n_above)
        row_out.copy_(ints.to(_F64) * unit)
        return above.to(_F64) * unit
    _row_powers(p, work, row_out)
    return _above_powers(hi_vals, hi_starts, n_above, float(2**fx)).T.to(_F64) * unit
# Off the CPU, rows are taken in blocks of about this many values (bounds the fixed-point temporaries).
_POWER_BLOCK = 2**22


def _power_blocks(p: torch.Tensor) -> list[slice]:
    """Row blocks for :func:`_row_powers`: cache-sized on CPU, about :data:`_POWER_BLOCK` values elsewhere."""
    if p.device.type == "cpu":
        return cache_blocks(p)
    r, d = p.shape
    step = max(1, _POWER_BLOCK // max(d, 1))
    return [slice(b0, min(r, b0 + step)) for b0 in range(0, r, step)]


def _band_masks(p: torch.Tensor, metric: str, width: int, p_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact-solver masks (smooth 0) from a partial sort around the RMA cut; rows it cannot certify are flagged.

    The exact score lies between the RMA score R(tau) (its Jensen lower bound) and R(tau) (1 + eps(tau))
    (:func:`_score_gap`, decreasing in tau), so a tau can only be optimal where R(tau) (1 + eps(tau)) >= R*,
    the best RMA score (the exact score at the RMA optimum is at least R*). :mod:`rankseg._band` brackets
    the RMA cut without sorting and gathers a sorted band of ranks around it, wider above the cut (where
    eps is larger) than below. Inside the band only the ranks with R (1 + eps) >= R* are scored exactly
    (quadrature of :mod:`rankseg._quadrature` with nodes for a >= n_hi + 1, where y = 1 - e^-t is small and
    every node sum is a power series in the probabilities: power sums over the whole row for log G, over the
    pixels above the band, and prefix power sums over the sorted band). Outside the band the concavity of
    the RMA objective (:func:`rankseg._band.superlevel_inside`) proves that no rank reaches the best score.

    Shape:
        p: (r, d) float32/float64.  p_max: (r,) row maxima.  outputs: masks (r, d) bool, ok (r,) bool (masks
        of rows with ok False are not meaningful).
    """
    r, d = p.shape
    work = scratch(p.shape, p.dtype, p.device)
    mu = p.sum(1).to(_F64)
    ratio = Ratio(metric, 0.0, mu)
    v0, sub = start_score(p, ratio, p_max, width)
    bracket = ratio_bracket(p, ratio, v0, work)
    # The window reaches about 2 sqrt(eps) (relative) from the cut, eps the gap below the cut's rank: at the
    # split's rank on the low side, at a tenth of it on the high side, where the gap grows (a band that
    # still falls short there is rescued by the split certificate of _top_levels, at some cost). Only the
    # band's width depends on this estimate (from the sample's variance); every certificate uses the exact one.
    var_est = (sub * (1 - sub)).sum(1).to(_F64) * (d / sub.shape[1])
    tenth = (bracket.n.to(_F64) * 0.1).floor()
    eps_top = _outside_gaps(metric, mu, var_est, bracket.total, tenth, p_max)[1].clamp(0, 1)
    eps_low = _outside_gaps(metric, mu, var_est, bracket.total, bracket.n, p_max)[1].clamp(0, 1)
    cut = ratio.cut(bracket.v_hi)
    # The pixels above the band are gathered for their power sums, except where the fused pass sums them.
    fused = _triton.enabled(p)
    widen = (2 * eps_low.sqrt() * cut, 2 * eps_top.sqrt() * cut)
    band = band_for_bracket(p, ratio, bracket, widen, work=work, with_above=not fused)
    hi_vals = hi_starts = None
    if not fused:
        band, hi_vals, hi_starts = band

    total = band.prefix()
    # Quadrature nodes for every tau >= n_hi. Beyond a_min, G (Dice) or the product over the unselected
    # pixels (IoU, whose mass is at least mu - S at the band's end) makes the integrand decay at least like
    # e^(-(a_min + m y(T)/T) t) on [0, T], T = 38 / a_min, m that mass (y(t)/t is decreasing): the nodes stop
    # where that rate has cut 38 e-folds, which keeps y = 1 - e^-t and the series short.
    a_min = (band.n_hi + (1 if metric == "dice" else 0)).clamp_min(1).to(_F64)
    m_out = mu if metric == "dice" else mu - total.gather(1, band.count.unsqueeze(1))[:, 0]
    horizon = 38 / a_min
    t, w = nodes(d, mu, 0.0, a_min + m_out.clamp_min(0) * -torch.expm1(-horizon) / horizon)
    y_max = (-torch.expm1(-t)).amax(1)
    ok = (y_max <= _BAND_MAX_Y) & (mu >= _BAND_MIN_MASS)
    y_top = float(y_max[ok].max()) if bool(ok.any()) else 0.5
    log_tol = math.log(_SERIES_TOL / max(float(mu.max()), 1.0))
    terms = min(max(2, math.ceil(log_tol / math.log(max(y_top, 1e-300)))), 60)
    # Power sums P_m = sum p^m of the row for log G. The pixels below the band (p <= lo) need fewer terms,
    # since (p y)^m <= (lo y)^m: P_m for m <= terms_lo come from the whole row (fixed-point sums of float32
    # powers, :func:`_row_powers`, one read on CUDA; the first gives the exact variance), higher ones from the
    # band and the pixels above it alone. For a row with mass mu, node maximum y and x = lo y, what that leaves
    # out of log G is sum_(m > M) P_m(low) y^m / m <= mu y x^M / ((M + 1) (1 - x)) with M = terms_lo (as P_m(low) <=
    # lo^(m-1) P_1(low)); terms_lo is the least M that keeps this below the series tolerance in every row.
    terms_lo = _low_terms(mu[ok], y_max[ok], band.lo[ok].to(_F64).clamp_min(0), terms)
    row_pow = torch.empty(r, terms, dtype=_F64, device=p.device)
    row_pow[:, 0] = mu
    # and the sums of p^m above the band, m = 1 .. terms + 1
    hi_pow = _band_power_sums(p, work, band.hi, hi_vals, hi_starts, row_pow[:, 1:terms_lo], terms + 1)
    del work
    var = (mu - row_pow[:, 1]).clamp_min(0)

    # the ranks that can beat R*: R(tau) (1 + eps(tau)) >= R*
    taus = (band.n_hi.unsqueeze(1) + torch.arange(total.shape[1], device=p.device)).to(_F64)
    valid = band.valid()
    rma = ratio.score(total, taus).masked_fill(~valid, -torch.inf)
    r_star = rma.amax(1)
    squares = None
    if metric == "dice":  # Q_tau = sum of squares of the tau largest values, for the tighter Dice gap
        b = band.vals.to(_F64).clamp_min(0)
        squares = hi_pow[:, 1:2] + torch.cat([torch.zeros_like(b[:, :1]), (b * b).cumsum(1)], 1)
    gaps = _score_gap(metric, mu.unsqueeze(1), var.unsqueeze(1), taus, total, squares)
    upper = rma * (1 + gaps)  # >= the exact score of each rank
    # Ranks that may beat the RMA optimum's exact score (at least R*, by Jensen; computed below).
    j_rma = rma.argmax(1)
    maybe = valid & (upper >= r_star.unsqueeze(1) * (1 - SCORE_SLACK))
    j0 = torch.where(maybe.any(1), maybe.to(torch.uint8).argmax(1), torch.zeros_like(band.count))
    j1 = maybe.shape[1] - 1 - maybe.flip(1).to(torch.uint8).argmax(1)

    if terms > terms_lo:
        b = band.vals.to(_F64).clamp_min(0)
        bp = b ** terms_lo
        for m in range(terms_lo, terms):
            bp = bp * b
            row_pow[:, m] = hi_pow[:, m] + bp.sum(1)
    y = -torch.expm1(-t)
    inv_m = 1 / torch.arange(1, terms + 1, device=p.device, dtype=_F64)
    y_pow = torch.empty(*y.shape, terms + 1, dtype=_F64, device=p.device)  # (r, K, terms + 1): y^0 .. y^terms
    y_pow[:, :, 0] = 1
    for m in range(1, terms + 1):
        torch.mul(y_pow[:, :, m - 1], y, out=y_pow[:, :, m])
    log_g = -torch.einsum("rm,rkm->rk", row_pow * inv_m, y_pow[:, :, 1:])
    if metric == "dice":
        hi_sums = torch.einsum("rm,rkm->rk", hi_pow, y_pow)  # sum over hi of p / (1 - p y)
    else:
        hi_sums = -torch.einsum("rm,rkm->rk", hi_pow[:, :terms] * inv_m, y_pow[:, :, 1:])  # log prod (1 - p y)

    pre = _prefix_powers(band, terms, int(j1.max()) if r else 0)
    log_w = torch.log(w)

    def exact_scores(first: torch.Tensor, n: int) -> torch.Tensor:
        out = torch.empty(r, n, dtype=_F64, device=p.device)
        # two (r, n, K) float64 temporaries per row (and the bmm input): within the input size
        for sl in row_chunks(r, n * t.shape[1] * 8 * 3, p.numel() * p.element_size(), p.device):
            sub = Band(*(x[sl] if i < 6 else x for i, x in enumerate(band)))
            parts = (t[sl], log_w[sl], log_g[sl], hi_sums[sl], y_pow[sl])
            out[sl] = _band_scores(pre[:, sl], sub, metric, *parts, first[sl], n)
        return out

    # The exact score of the RMA optimum is a much better floor than R*: only ranks whose upper bound
    # reaches it are scored.
    floor = exact_scores(j_rma, 1)[:, 0]
    scored = maybe & (upper >= floor.unsqueeze(1) * (1 - SCORE_SLACK))
    scored.scatter_(1, j_rma.unsqueeze(1), True)
    j0 = scored.to(torch.uint8).argmax(1)
    j1 = scored.shape[1] - 1 - scored.flip(1).to(torch.uint8).argmax(1)
    span = max(int((j1 - j0 + 1).max()), 1)
    score = exact_scores(j0, span)
    jj = j0.unsqueeze(1) + torch.arange(span, device=p.device)
    score = score.masked_fill(~scored.gather(1, jj.clamp_max(scored.shape[1] - 1)) | (jj > j1.unsqueeze(1)), -torch.inf)
    best = score.amax(1)
    tau = band.n_hi + j0 + score.argmax(1)
    # Outside the band. Below it: eps at tau = n_lo + 1 holds for every larger tau. Above it the gap grows as
    # tau falls, so the ranks above are split at the pixels above a few thresholds c_1 < c_2 < c_3 between
    # hi and the row maximum (counted from the gathered pixels): ranks in [n(c_k), n(c_(k-1))) use the gap
    # at n(c_k), checked at n(c_(k-1)), and ranks below n(c_3) the gap at 0, checked at n(c_3).
    last = band.count.unsqueeze(1)
    eps_left, eps_right = _outside_gaps(
        metric, mu, var, total[:, 0], band.n_hi + band.count, p_max.to(_F64),
        total.gather(1, last)[:, 0], None if squares is None else squares.gather(1, last)[:, 0],
    )
    ok &= torch.isfinite(best) & (best >= r_star * (1 - SCORE_SLACK))
    level = best * (1 - SCORE_SLACK)
    ok &= superlevel_inside(band, ratio, level / (1 + eps_right), d, side="bottom", pre=total)
    top_n, top_s = band.n_hi.to(_F64), total[:, 0]
    top_ok = (ratio.gap(level / (1 + eps_left), top_s, top_n) < 0) | (top_n == 0)
    if not bool((top_ok | ~ok).all()):
        if hi_vals is None:  # rare: the fused path gathers the pixels above the band only here
            hi_vals, hi_starts = above_band(p, band)
        args = (metric, ratio, mu, var, p_max.to(_F64), band, hi_vals, hi_starts, level, top_s, eps_left, p.dtype)
        top_ok = top_ok | _top_levels(*args)
    ok &= top_ok
    return mask_at_rank(band, torch.where(ok, tau, band.n_hi)), ok


def _top_levels(metric, ratio, mu, var, p_max, band, hi_vals, hi_starts, level, top_s, eps_left, dtype):
    """The certificate for the ranks above the band, split at the pixels above a few thresholds.

    Ranks in [n(c_k), n(c_(k-1))) use the gap at n(c_k), checked at n(c_(k-1)) (the RMA objective is
    increasing up to the band, see :func:`rankseg._band.superlevel_inside`), and ranks below n(c_3) the gap
    at 0, checked at n(c_3); c_1 < c_2 < c_3 lie between hi and the row maximum and are counted from the
    gathered pixels above the band.
    """
    top_n = band.n_hi.to(_F64)
    hi64 = band.hi.to(_F64)
    top_ok = torch.ones_like(band.count, dtype=torch.bool)
    for frac in (0.125, 0.25, 0.5):
        c = threshold_below(hi64 + (p_max - hi64).clamp_min(0) * frac, dtype)
        n_c, s_c = ragged_count_sum(hi_vals, hi_starts, c)
        if metric == "dice":  # ranks >= n_c, with Q / S <= p_max
            eps_c = _score_gap(metric, mu, var, n_c.to(_F64), torch.ones_like(mu), p_max)
        else:  # a = tau >= n_c and S_tau <= top_s
            eps_c = _reciprocal_gap(var, n_c.to(_F64).clamp_min(1), mu - top_s)
        top_ok &= (ratio.gap(level / (1 + eps_c), top_s, top_n) < 0) | (top_n == 0)
        top_n, top_s = n_c.to(_F64), s_c
    return top_ok & ((ratio.gap(level / (1 + eps_left), top_s, top_n) < 0) | (top_n == 0))


def exact_row_masks(
    rows: torch.Tensor,
    metric: str,
    smooth: float,
    solve: torch.Tensor,
    width: int = 1,
    maxima: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact-solver masks for every row; rows with ``solve`` False stay empty. Shape: (R, d) -> (R, d) bool.

    Smooth 0 takes the partial-sort path (:func:`_band_masks`); smoothed metrics and rows it cannot certify
    sort their rows. On CUDA (float32, triton importable) smooth 0 runs the fused Triton path instead
    (:func:`rankseg._triton.exact.exact_masks`), and only the rows it does not take go through the torch path.
    """
    if smooth == 0.0 and rows.numel() and _triton.enabled(rows):
        from rankseg._triton import exact as fused

        masks, rest = fused.exact_masks(rows, metric, solve)
        if rest is not None:  # rows the fused window does not take (small objects): the torch path (empty here)
            sub = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device).index_fill_(0, rest, True)
            masks |= _torch_row_masks(rows, metric, smooth, sub, width, maxima)
        return masks
    return _torch_row_masks(rows, metric, smooth, solve, width, maxima)


def _torch_row_masks(rows, metric, smooth, solve, width, maxima) -> torch.Tensor:
    """:func:`exact_row_masks` by the torch path (the reference of the fused one)."""
    fast = smooth == 0.0

    def solve_chunk(p: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if not fast:
            return _sorted_masks(p, metric, smooth)
        masks, ok = _band_masks(p, metric, width, p.amax(1) if maxima is None else maxima[ids])
        if not bool(ok.all()):
            rest = (~ok).nonzero().squeeze(1)
            masks[rest] = _sorted_masks(p[rest], metric, smooth)
        return masks

    return masks_by_chunks(rows, solve, rows.shape[1] * (rows.element_size() + 2 if fast else 96), solve_chunk)


def _sorted_masks(p: torch.Tensor, metric: str, smooth: float) -> torch.Tensor:
    vals = sort_descending(p)
    return top_tau_mask(p, vals, _exact_tau(vals.to(_F64), metric, smooth))


# Multiclass increments: rows whose nodes keep y below this evaluate their increment as a polynomial in p.
_POLY_MAX_Y = 0.3
_POLY_MAX_TERMS = 40


def exact_gains(probs: torch.Tensor, masks: torch.Tensor, count: torch.Tensor, metric: str, smooth: float):
    """Exact expected-score increments for the multiclass overlap resolution, for every pixel and class.

    For each (image, class) with uniquely-owned set A the increment of a pixel of probability p is
    E[metric(A + {pixel})] - E[metric(A)], computed with the same quadrature as :func:`expected_metric`:

        Dice:  const + sum_k c_k p / (1 - p y_k)        IoU:  (S_A + s + p) sum_k c_k / (1 - p y_k) - const

    Where every node has y_k <= 0.3 (almost every row: at smooth 0 the nodes stop where G, which decays at
    least like e^(-mu y), has cut the integrand by e^-38, so y stays small even for small A), both are
    polynomials in p: p / (1 - p y) = sum_m p^(m+1) y^m and 1 / (1 - p y) = sum_m (p y)^m, summed to the
    term where (y_max)^m / (1 - y_max) < 1e-13, so an increment costs a Horner pass instead of a sum over
    the ~70 nodes. The other rows use the node sum.

    Returns:
        a :data:`rankseg._multiclass.GainsFn` (increments in the working dtype, like the RMA ones).
    """
    s = smooth
    n_img, n_cls, d = probs.shape
    unique = (masks & (count == 1).unsqueeze(1)).reshape(n_img * n_cls, d)
    rows = probs.reshape(n_img * n_cls, d)
    # plain reductions (float32 sums, uint8 counts): chunked float64 copies would cost memory here
    tau = unique.view(torch.uint8).sum(1, dtype=torch.int32).to(_F64)
    empty = tau == 0
    mu = rows.sum(1).to(_F64)
    mass = _masked_sums(rows, unique)
    a_min = torch.where(empty, 1 + s, tau + s)
    if s == 0:
        # G (Dice; for IoU the product over the pixels outside A) decays at least like e^(-m y) with m the
        # mass it covers, and y(t) / t is decreasing: on [0, T], T = 38 / a_min, the rate is at least
        # a_min + m y(T) / T, beyond T e^(-a_min t) alone is below e^-38.
        outside = mu if metric == "dice" else (mu - mass).clamp_min(0)
        horizon = 38 / a_min
        a_min = a_min + outside * -torch.expm1(-horizon) / horizon
    t, w = nodes(d, mu, s, a_min)
    log_g, h, log_a = _fast_node_sums(rows, unique, t)
    log_p0 = torch.zeros_like(tau)
    if s > 0:  # P(Gamma = 0), for the empty prediction's score (0 at smooth 0)
        for sl in row_chunks(rows.shape[0], d * 16, rows.numel() * rows.element_size(), rows.device):
            log_p0[sl] = torch.log1p(-rows[sl].to(_F64)).sum(1)
    tau_ = tau.unsqueeze(1)
    g1 = w * torch.exp(log_g - (tau_ + 1 + s) * t)
    empty_score = _empty_score(w, t, log_g, log_p0, s)
    if metric == "dice":
        g2 = w * torch.exp(log_g - (tau_ + 2 + s) * t)
        old = 2 * (g1 * h).sum(1)
        if s > 0:
            old = torch.where(empty, empty_score, old + s * (w * torch.exp(log_g - (tau_ + s) * t)).sum(1))
        const = (2 * (g2 * h).sum(1) + s * g1.sum(1) - old).view(n_img, n_cls)
        coef = 2 * g2
        base = None
    else:
        log_q = log_g - log_a
        old = (mass + s) * (w * torch.exp(log_q - (tau_ + s) * t)).sum(1)
        old = torch.where(empty, empty_score, old)
        const = old.view(n_img, n_cls)
        coef = w * torch.exp(log_q - (tau_ + 1 + s) * t)
        base = (mass + s).view(n_img, n_cls)
    y = -torch.expm1(-t)
    y_max = y.amax(1)
    poly_ok = y_max <= _POLY_MAX_Y
    y_top = float(y_max[poly_ok].max()) if bool(poly_ok.any()) else 0.0
    terms = 1 if y_top <= 0 else math.ceil(math.log(1e-13 * (1 - y_top)) / math.log(y_top))
    if terms > _POLY_MAX_TERMS:
        poly_ok = torch.zeros_like(poly_ok)
        terms = 1
    # a_m = sum_k c_k y_k^m, m = 0 .. terms - 1: the increment's polynomial coefficients per (image, class)
    y_pow = torch.empty(*y.shape, terms, dtype=_F64, device=t.device)
    y_pow[:, :, 0] = 1
    for m in range(1, terms):
        torch.mul(y_pow[:, :, m - 1], y, out=y_pow[:, :, m])
    poly = torch.einsum("rk,rkm->rm", coef, y_pow).view(n_img, n_cls, terms)
    slow_rows = (~poly_ok).view(n_img, n_cls)
    coef = coef.view(n_img, n_cls, t.shape[1])
    y = y.view(n_img, n_cls, t.shape[1])

    const_ = const.unsqueeze(2)
    base_ = base.unsqueeze(2) if base is not None else None
    bi, ci = slow_rows.nonzero(as_tuple=True)

    def gains(sl: slice) -> torch.Tensor:
        p = probs[:, :, sl]
        dt = p.dtype
        a = poly.to(dt)
        # Horner for P(p) = sum_m a_m p^m over every pixel and class, in the working dtype (like the RMA
        # increments); Dice: const + p P(p), IoU: (S_A + s + p) P(p) - const
        if terms == 1:
            acc = torch.zeros_like(p).add_(a[:, :, :1])
        else:
            acc = torch.mul(p, a[:, :, -1:]).add_(a[:, :, -2:-1])
            for m in range(terms - 3, -1, -1):
                acc.mul_(p).add_(a[:, :, m : m + 1])
        if metric == "dice":
            out = acc.mul_(p).add_(const_.to(dt))
        else:
            out = acc.mul_(p + base_.to(dt)).sub_(const_.to(dt))
        if bi.numel():
            ps = p[bi, ci].to(_F64)  # (n, pixels) of the rows the polynomial does not cover
            node_sum = torch.zeros_like(ps)
            for k in range(coef.shape[2]):  # quadrature nodes, vectorised over the rows and pixels
                c_k = coef[bi, ci, k].unsqueeze(1)
                inv = 1 / (1 - ps * y[bi, ci, k].unsqueeze(1)).clamp_min(_TINY)
                node_sum += c_k * (ps * inv if metric == "dice" else inv)
            if metric == "dice":
                out[bi, ci] = (node_sum + const_[bi, ci]).to(dt)
            else:
                out[bi, ci] = ((base_[bi, ci] + ps) * node_sum - const_[bi, ci]).to(dt)
        return out

    return gains
