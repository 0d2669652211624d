"""Record rankseg 0.0.8's outcomes of ``rankseg.integration`` calls for the parity tests (no wheel at test time).

    pip install --no-deps --target /tmp/official rankseg==0.0.8      # the real 0.0.8 (if not there yet)
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/parity/record_integration.py --official /tmp/official

Writes ``tests/parity_data/integration_0.0.8.pt`` (readable with ``torch.load(..., weights_only=True)``):
``{"command", "rankseg", "torch", "transformers", "specs_xz", "outcomes"}``: ``specs_xz`` is the JSON list of the
call specs, LZMA-compressed, as a uint8 tensor (the real model outputs inside the specs repeat a lot; see
:func:`load`), and ``outcomes[i]`` is 0.0.8's outcome of spec ``i`` (``integration_cases.run``). The specs are

* the pinned set of ``integration_cases.pinned()``: every public function, class and method of 0.0.8's
  ``rankseg.integration`` and every error message it can raise;
* the outputs of real tiny Hugging Face models with seeded random weights (SegFormer, UPerNet, Mask2Former, SAM,
  SAM2, SAM3; ``tests/integration/tiny_hf_models.py``), stored byte for byte in the specs, through every adapter;
* a few hundred specs drawn by ``integration_cases.draw`` (those with large results are left out: < 500 KB).

0.0.8 runs in a subprocess with ``PYTHONPATH=<official>`` (both packages are called ``rankseg``); ours runs in
another one, and the verdicts of ``integration_cases.compare`` are printed as a check.
"""

from __future__ import annotations

import argparse
import collections
import json
import lzma
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "tests" / "parity_data" / "integration_0.0.8.pt"
MAX_DRAWN_ELEMENTS = 2000  # drawn cases whose 0.0.8 result holds more tensor elements are not stored
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import integration_cases as ic  # noqa: E402


def _fields(outputs: Any, names: list[str]) -> dict[str, Any]:
    return {name: ic.encode_tensor(getattr(outputs, name)) for name in names if getattr(outputs, name) is not None}


def real_model_specs() -> list[dict[str, Any]]:
    """Specs holding the outputs of the tiny real models (``tiny_hf_models``), exactly."""
    import tiny_hf_models as hf

    specs: list[dict[str, Any]] = []

    def add(fn: str, outputs: dict[str, Any], ctor: dict[str, Any] | None = None, **args: Any) -> None:
        spec: dict[str, Any] = {"fn": fn, "outputs": outputs, "args": args, "source": "real model"}
        if ctor is not None:
            spec["ctor"] = ctor
        specs.append(spec)

    rt_fns = ("transformers.restore_semantic_probs", "transformers.postprocess")
    seg = hf.segformer_outputs()
    seg_out = ic._out(_fields(seg, ["logits"]), type(seg).__name__)
    for fn in rt_fns:
        add(fn, seg_out, target_sizes=[[24, 24], [20, 16]])
    add("transformers.postprocess", seg_out, target_sizes=[[12, 12], [8, 12]],
        rankseg_kwargs={"map": {"metric": "iou", "output_mode": "multilabel"}})  # fmt: skip
    uper = hf.upernet_outputs()
    for fn in rt_fns:
        add(fn, ic._out(_fields(uper, ["logits"]), type(uper).__name__), target_sizes=[[16, 12]])
    add("transformers.restore_semantic_probs", ic._out(_fields(uper, ["logits"]), container="fields"))
    m2f = hf.mask2former_outputs()
    m2f_fields = _fields(m2f, ["class_queries_logits", "masks_queries_logits"])
    for fn in rt_fns:
        add(fn, ic._out(m2f_fields, type(m2f).__name__), target_sizes=[[16, 16], [10, 15]])
        add(fn, ic._out(m2f_fields, container="dict"), model={"model": {"cls": "Mask2FormerConfig"}},
            target_sizes=[[12, 12], [12, 8]])  # fmt: skip
    add("transformers.restore_semantic_probs", ic._out(m2f_fields), target_sizes=[[12, 12], [12, 8]])

    sam, sizes = hf.sam_outputs()
    sam_out = ic._out(_fields(sam, ["iou_scores", "pred_masks"]), type(sam).__name__)
    sam_sizes = {k: v.tolist() for k, v in sizes.items()}
    for fn in ("sam.Sam1.restore_mask_probs", "sam.Sam1.postprocess"):
        add(fn, sam_out, {"pad_size": {"map": {"height": 64, "width": 64}}}, **sam_sizes)
    add("sam.Sam1.postprocess", sam_out, {"pad_size": [64, 64], "rankseg_kwargs": {"map": {"metric": "iou"}}},
        **sam_sizes)  # fmt: skip
    add("transformers.postprocess", sam_out)
    sam2 = hf.sam2_outputs()
    sam2_out = ic._out(_fields(sam2, ["iou_scores", "pred_masks", "object_score_logits"]), type(sam2).__name__)
    for fn in ("sam.Sam2.restore_mask_probs", "sam.Sam2.postprocess"):
        for flag in (False, True):
            add(fn, sam2_out, {"apply_non_overlapping_constraints": flag}, original_sizes=[[16, 20], [24, 12]])
    sam3 = hf.sam3_outputs()
    names = ["pred_masks", "pred_boxes", "pred_logits", "presence_logits", "semantic_seg"]
    sam3_out = ic._out(_fields(sam3, names), type(sam3).__name__)
    for fn in ("sam.Sam3.restore_instance_mask_probs", "sam.Sam3.postprocess_instance"):
        add(fn, sam3_out, {"threshold": 0.1}, target_sizes=[[12, 16], [16, 8]])
        add(fn, sam3_out, {})
    for fn in ("sam.Sam3.restore_semantic_mask_probs", "sam.Sam3.postprocess_semantic"):
        add(fn, sam3_out, {}, target_sizes=[[12, 16], [16, 8]])
        add(fn, sam3_out, {"rankseg_kwargs": {"map": {"smooth": 1.0}}}, original_sizes=[[12, 12], [10, 14]])
    add("sam.Sam2.restore_mask_probs", sam3_out, {}, original_sizes=[[4, 4], [4, 4]])
    return specs


def run_side(specs: list[dict[str, Any]], package_root: str, tmp: str, side: str) -> subprocess.Popen:
    spec_file = os.path.join(tmp, "specs.json")
    if not os.path.exists(spec_file):
        Path(spec_file).write_text(json.dumps(specs))
    env = dict(os.environ, PYTHONPATH=package_root, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = os.path.join(tmp, f"{side}.pt")
    cmd = [sys.executable, str(HERE / "integration_cases.py"), "--worker", spec_file, out]
    return subprocess.Popen(cmd, env=env, cwd=tmp)


def _elements(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_elements(v) for v in value)
    if isinstance(value, dict):
        return sum(_elements(v) for v in value.values())
    return 0


def load(path: str | Path = OUT) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(specs, 0.0.8 outcomes, the other payload entries) of a recording."""
    payload = torch.load(path, weights_only=True)
    specs = json.loads(lzma.decompress(payload.pop("specs_xz").numpy().tobytes()))
    return specs, payload.pop("outcomes"), payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default="/tmp/official", help="folder holding 0.0.8's rankseg/")
    ap.add_argument("--drawn", type=int, default=250, help="drawn specs to add (before the size filter)")
    ap.add_argument("--seed", type=int, default=20260)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if not (Path(args.official) / "rankseg" / "integration").is_dir():
        ap.error(f"{args.official} does not hold rankseg 0.0.8 (pip install --no-deps --target DIR rankseg==0.0.8)")

    pinned = ic.pinned()
    real = real_model_specs()
    drawn = ic.draw(args.drawn, args.seed)
    specs = pinned + real + drawn
    with tempfile.TemporaryDirectory() as tmp:
        procs = {
            "official": run_side(specs, args.official, tmp, "official"),
            "ours": run_side(specs, str(REPO), tmp, "ours"),
        }
        res = {}
        for side, proc in procs.items():
            if proc.wait() != 0:
                raise SystemExit(f"the {side} worker failed")
            res[side] = torch.load(os.path.join(tmp, f"{side}.pt"), weights_only=False)  # written just now
    if not res["official"]["package"].startswith(str(Path(args.official).resolve())):
        raise SystemExit(f"the official worker imported {res['official']['package']}")

    kept, outcomes, verdicts, skipped = [], [], collections.Counter(), 0
    for i, (spec, official, ours) in enumerate(zip(specs, res["official"]["outcomes"], res["ours"]["outcomes"])):
        if (
            i >= len(pinned) + len(real)
            and official["kind"] == "value"
            and _elements(official["value"]) > MAX_DRAWN_ELEMENTS
        ):
            skipped += 1
            continue
        verdict, why = ic.compare(spec, ours, official)
        verdicts[verdict] += 1
        if verdict == "differs":
            print("DIFFERS:", why, json.dumps(spec)[:300])
        if verdict == "same":
            official.pop("promoted", None)  # only needed to explain a difference
        kept.append(spec)
        outcomes.append(official)

    import transformers

    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python scripts/parity/record_integration.py --official /tmp/official"
    payload = {
        "command": cmd,
        "rankseg": "0.0.8",
        "torch": str(torch.__version__),
        "transformers": transformers.__version__,
        "specs_xz": torch.frombuffer(bytearray(lzma.compress(json.dumps(kept).encode())), dtype=torch.uint8),
        "outcomes": outcomes,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    torch.save(payload, tmp_out)
    assert load(tmp_out)[0] == kept  # the tests load it this way (weights_only=True)
    os.replace(tmp_out, out)
    kinds = collections.Counter(o["kind"] for o in outcomes)
    print(f"recorded {len(kept)} cases ({len(pinned)} pinned, {len(real)} real-model, "
          f"{len(kept) - len(pinned) - len(real)} drawn; {skipped} large drawn ones left out) into {out}: "
          f"{out.stat().st_size / 1024:.0f} KB; 0.0.8 {dict(kinds)}; ours vs 0.0.8 {dict(verdicts)}")  # fmt: skip


if __name__ == "__main__":
    main()
