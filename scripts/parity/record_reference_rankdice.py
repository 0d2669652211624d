"""Record the JMLR authors' ``rank_dice`` (PS/rankdice.py) on pinned inputs for ``tests/test_reference_rankdice.py``.

    mkdir -p /tmp/psref && git -C MIRROR show 9547cf9:pytorch-segmentation-rankseg/rankdice.py > /tmp/psref/rankdice.py
    python scripts/parity/record_reference_rankdice.py --reference /tmp/psref

``MIRROR`` is a clone of https://github.com/statmlben/rankseg; the file was read at commit
9547cf9487a4e1407b04a6bbc0ff9b2337e6be67 (it last changed in 6fb7f5001e25121f9b6b92cc1f2768d0150b9642). It imports
torch, numpy and scipy; the project's environment has them (else ``pip install --target DIR scipy`` and add DIR to
``PYTHONPATH``). Each input below is run through ``rank_dice(probs, device="cpu")`` with the tester's defaults
(``app=2, smooth=0, gap=0, truncate_mean=True``) on two torch threads, as the tests run; every input has at least two
(image, class) rows, since a one-row float32 reduction over many pixels depends on the thread count. The inputs and
the reference's outcome (masks packed 8 per byte, sizes and cut points, or the exception it raised) go to
``tests/parity_data/reference_rankdice.pt``: tensors, strings and numbers only, loadable with ``weights_only=True``.
Recording takes about a minute.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "parity_data" / "reference_rankdice.pt"
COMMIT = "9547cf9487a4e1407b04a6bbc0ff9b2337e6be67"


def _blobs(g: torch.Generator, shape: tuple[int, ...], width: int = 7) -> torch.Tensor:
    """Spatially smooth standard-ish noise (objects rather than salt and pepper)."""
    return F.avg_pool2d(torch.randn(*shape, generator=g), width, 1, width // 2) * width


def _softmax_blobs(g):
    return (_blobs(g, (2, 3, 64, 64)) * 1.5).softmax(1)


def _softmax_small_objects(g):
    z = _blobs(g, (2, 4, 48, 48))
    z[:, 0] += 3  # a dominant background: the other classes have 10 to 34 pixels >= 1/2 (T-RNA)
    return z.softmax(1)


def _sigmoid_sparse(g):
    z = _blobs(g, (2, 3, 64, 64))
    return (2 * z - torch.tensor([1.0, 3.0, 6.0]).view(1, 3, 1, 1)).sigmoid()


def _sigmoid_wide_trna(g):
    z = _blobs(g, (2, 2, 48, 48))  # few pixels >= 1/2, many between 0.1 and 0.5: T-RNA on a wide support
    return (1.2 * z - torch.tensor([2.4, 3.2]).view(1, 2, 1, 1)).sigmoid()


def _quantised_ties(g):
    p = (_blobs(g, (2, 3, 40, 40)) - torch.tensor([0.0, 2.0, 5.0]).view(1, 3, 1, 1)).sigmoid()
    return (p * 8).round() / 8  # ties everywhere, many pixels at exactly 0, 1/2 and 1


def _saturated(g):
    p = (30 * _blobs(g, (2, 3, 32, 32)) - 40).sigmoid()  # exact 0 and 1 in float32
    p[..., :3, :] = torch.rand(2, 3, 3, 32, generator=g)
    return p


def _uniform_power(g):
    return torch.rand(2, 2, 50, 50, generator=g) ** torch.tensor([0.7, 6.0]).view(1, 2, 1, 1)


def _softmax_two_class_large(g):
    z = F.interpolate(torch.randn(1, 2, 10, 10, generator=g), size=(200, 200), mode="bilinear") * 4
    return z.softmax(1)


def _background(g, d: int = 16) -> torch.Tensor:
    p = torch.rand(1, 2, d, d, generator=g) * 0.3
    p[0, 1, :6] = 0.8  # a second, ordinary class (BA)
    return p


def _support_above_search_bound(g):
    p = _background(g)
    p[0, 0] = 1e-7
    p[0, 0, :3] = 1.0
    p[0, 0, 3, :12] = 1.0
    p[0, 0, 4, 0] = 0.99  # 60 certain pixels and one at 0.99: u <= low, the reference predicts nothing
    return p


def _nan_scores(g):
    p = torch.full((1, 2, 32, 32), 1e-6)
    p[0, 0, :2, :3] = 1.0  # T-RNA: the pmf vanishes on the support, every score NaN, t = 0
    p[0, 1, :5] = 1 - 1e-6  # BA: the same, argmax of all-NaN scores gives t = 1
    return p


def _nan_after_one_pixel(g):
    p = _background(g)
    p[0, 0] = 0.0
    p[0, 0, 0] = 1.0
    p[0, 0, 1, :4] = 1.0
    p[0, 0, 5, 5] = 0.7  # var = 0 without this pixel: NaN pmf from its t on, so w stays NaN
    return p


def _raises_past_last_pixel(g):
    return torch.rand(1, 2, 8, 8, generator=g)  # 5 mu + 1 > d = 64: T-RNA indexes past the last pixel


def _raises_nan_point(g):
    p = _nan_after_one_pixel(g)
    p[0, 0, 5, 5] = 0.5  # x = 0 / 0 at one support point: torch.distributions.Normal refuses it
    return p


def _raises_zero_variance(g):
    p = _background(g)
    p[0, 0] = 0.0
    p[0, 0, :4] = 1.0  # var = 0: NaN quantiles, garbage int32 bounds, arange fails
    return p


CASES: dict[str, Callable[[torch.Generator], torch.Tensor]] = {
    "softmax_blobs": _softmax_blobs,
    "softmax_small_objects": _softmax_small_objects,
    "sigmoid_sparse": _sigmoid_sparse,
    "sigmoid_wide_trna": _sigmoid_wide_trna,
    "quantised_ties": _quantised_ties,
    "saturated": _saturated,
    "uniform_power": _uniform_power,
    "softmax_two_class_large": _softmax_two_class_large,
    "support_above_search_bound": _support_above_search_bound,
    "nan_scores": _nan_scores,
    "nan_after_one_pixel": _nan_after_one_pixel,
    "raises_past_last_pixel": _raises_past_last_pixel,
    "raises_nan_point": _raises_nan_point,
    "raises_zero_variance": _raises_zero_variance,
}


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8, 8 elements a byte (little bit order), flattened; see :func:`unpack_bits`."""
    flat = mask.flatten()
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)]).view(-1, 8).to(torch.uint8)
    return (flat << torch.arange(8, dtype=torch.uint8)).sum(-1, dtype=torch.uint8)


def _branches(probs: torch.Tensor, tau: torch.Tensor, cut: torch.Tensor) -> dict[str, int]:
    """How many rows took each path (from the truncated mean and the recorded outcome)."""
    mu = (probs.flatten(2) >= 0.5).sum(-1)
    skipped = (mu > 0) & (tau == 0) & (cut == 0)
    return {
        "no pixel >= 1/2": int((mu == 0).sum()),
        "T-RNA (mu <= 50)": int(((mu > 0) & (mu <= 50) & ~skipped).sum()),
        "BA (mu > 50)": int(((mu > 50) & ~skipped).sum()),
        "u <= low": int(skipped.sum()),
        "t = 0 with pixels >= 1/2": int(((mu > 0) & (tau == 0) & (cut != 0)).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default="/tmp/psref", help="folder holding PS/rankdice.py")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if not (Path(args.reference) / "rankdice.py").is_file():
        ap.error(f"{args.reference} does not hold rankdice.py (see the command in this script's docstring)")
    sys.path.insert(0, str(Path(args.reference).resolve()))
    import scipy
    from rankdice import rank_dice  # the reference; imported from --reference only

    torch.set_num_threads(2)
    records = []
    for i, (name, make) in enumerate(CASES.items()):
        probs = make(torch.Generator().manual_seed(1000 + i)).contiguous()
        assert probs.dtype == torch.float32 and probs.shape[0] * probs.shape[1] >= 2, name
        record = {"name": name, "probs": probs.clone()}
        try:
            masks, tau, cut = rank_dice(probs, device="cpu")
        except Exception as err:  # noqa: BLE001 - the reference's failures are part of what is recorded
            record.update(raises=type(err).__name__, message=str(err)[:200])
            print(f"{name:28s} {tuple(probs.shape)!s:18s} raises {type(err).__name__}: {str(err)[:70]}")
        else:
            record.update(raises="", masks=pack_bits(masks), tau=tau.clone(), cutpoint=cut.clone())
            print(f"{name:28s} {tuple(probs.shape)!s:18s} {_branches(probs, tau, cut)}")
        records.append(record)
    payload = {
        "command": "python scripts/parity/record_reference_rankdice.py --reference /tmp/psref",
        "reference": f"statmlben/rankseg@{COMMIT}:pytorch-segmentation-rankseg/rankdice.py",
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "scipy": str(scipy.__version__),
        "python": platform.python_version(),
        "cases": records,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    print(f"recorded {len(records)} inputs into {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
