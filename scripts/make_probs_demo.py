"""Write a small nnU-Net v2 style folder of saved probabilities, made by nnU-Net's own export code, for trying
``evaluate_probs.py`` without a trained nnU-Net (and for its tests).

    python scripts/make_probs_demo.py outputs/probs_demo
    python evaluate_probs.py probs=outputs/probs_demo/predictions labels=outputs/probs_demo/labelsTs \
        'predict=[argmax,rankdice,rma]'

Three liver-like CT volumes (a sphere of "liver" with a small "tumor"): labels as NIfTI in ``labelsTs/``, and in
``predictions/`` what ``nnUNetv2_predict --save_probabilities`` writes per case (``.npz`` with ``probabilities``
(C, z, y, x), the ``.pkl`` properties, the segmentation ``.nii.gz``) plus ``dataset.json``. The logits are the
one-hot shape plus Gaussian noise (seeded); the labels are then drawn voxel by voxel from the saved probabilities,
so the probabilities are calibrated by construction, the setting RankSEG assumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

NNUNET_LABELS = {"background": 0, "liver": 1, "tumor": 2}


def nnunet_export(io_class, label_file: Path, out_truncated: Path, rng: np.random.Generator) -> np.ndarray:
    """Write ``out_truncated``.npz/.pkl/.nii.gz with nnU-Net's own export of logits made from the label as nnU-Net
    reads it (``io_class``); returns that label array, (z, y, x) in the probabilities' frame."""
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    seg, props = io_class().read_seg(str(label_file))
    shape = seg.shape[1:]
    props.update(
        shape_before_cropping=shape,
        shape_after_cropping_and_before_resampling=shape,
        bbox_used_for_cropping=[[0, n] for n in shape],
    )
    truth = seg[0].astype(np.int64)
    onehot = np.eye(3, dtype=np.float32)[truth].transpose(3, 0, 1, 2)
    logits = torch.from_numpy(2 * onehot + rng.normal(0, 1.2, onehot.shape).astype(np.float32))
    resampling = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
    config = {"spacing": list(props["spacing"]), "architecture": {}, "resampling_fn_probabilities_kwargs": resampling,
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape"}  # fmt: skip
    plans = PlansManager(
        {
            "dataset_name": "Dataset999_Test",
            "plans_name": "nnUNetPlans",
            "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2],
            "image_reader_writer": io_class.__name__,
            "label_manager": "LabelManager",
            "configurations": {"3d_fullres": config},
        }  # fmt: skip
    )
    dataset_json = {"labels": NNUNET_LABELS, "file_ending": ".nii.gz"}
    export_prediction_from_logits(
        logits, props, plans.get_configuration("3d_fullres"), plans, dataset_json, str(out_truncated),
        save_probabilities=True, num_threads_torch=1,
    )  # fmt: skip
    return truth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to create (must not exist)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import nibabel
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"error: {out} exists; pick a new folder")
    labels, preds = out / "labelsTs", out / "predictions"
    labels.mkdir(parents=True)
    preds.mkdir()
    (preds / "dataset.json").write_text(json.dumps({"labels": NNUNET_LABELS, "file_ending": ".nii.gz"}))
    rng = np.random.default_rng(args.seed)
    for i, shape in enumerate([(48, 40, 24), (40, 40, 20), (56, 44, 28)], 1):
        x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
        volume = np.where(x**2 + y**2 + z**2 < 0.49, 1, 0)
        volume[(x - 0.2) ** 2 + y**2 + z**2 < 0.04] = 2
        case = labels / f"liver_{i:03d}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(volume.astype(np.uint8), np.diag([0.8, 0.8, 2.5, 1])), case)
        nnunet_export(SimpleITKIO, case, preds / f"liver_{i:03d}", rng)
        # Redraw the truth voxel by voxel from the saved probabilities, so that they are calibrated by construction
        # (RankSEG's gains assume calibrated probabilities). They are (C, z, y, x); nibabel stores (x, y, z).
        with np.load(preds / f"liver_{i:03d}.npz") as f:
            probs = f["probabilities"].astype(np.float64)
        cum = probs.cumsum(0)
        drawn = (rng.random(probs.shape[1:]) > cum / cum[-1]).sum(0).astype(np.uint8)
        nibabel.save(nibabel.Nifti1Image(drawn.transpose(2, 1, 0), np.diag([0.8, 0.8, 2.5, 1])), case)
    print(f"wrote 3 cases: labels in {labels}, nnU-Net probabilities in {preds}")


if __name__ == "__main__":
    main()
