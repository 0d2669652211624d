"""Score probabilities saved by another tool (nnU-Net's --save_probabilities, or any per-case .npy/.npz/.pt) with
the prediction rules of configs/predict/; all logic lives in :func:`rankseg.engine.probs_eval.run_probs_evaluation`.

    python evaluate_probs.py probs=nnUNet_out labels=labelsTs predict=[argmax,rankdice] class_names=[bg,liver,tumor]
    python evaluate_probs.py probs=logits labels=gt activation=softmax dataset=synthetic   # classes from a config

Cases pair by file name up to the suffix (case_0001.npz <-> case_0001.nii.gz / .png / .npy). Results go to
results/probs/{name}/metrics.json (+ class_scores.csv, case_scores.csv), name= defaulting to the probs folder's
name. Exit status 2: a setup problem or a bad file (one message).
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate_probs")
def main(cfg: DictConfig) -> dict:
    from rankseg.engine import user_errors
    from rankseg.engine.probs_eval import run_probs_evaluation

    try:
        return run_probs_evaluation(cfg)
    except user_errors() as err:
        # Setup problems (bad config values, missing folders, bad files) get one message and exit code 2.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
