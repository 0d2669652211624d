"""Evaluate a trained checkpoint with several prediction rules in one pass (paper §2); all logic lives in
:func:`rankseg.engine.evaluate.run_evaluation`.

    python evaluate.py                                          # synthetic, threshold/argmax/rankdice
    python evaluate.py dataset=cityscapes model=pspnet loss=focal predict=[threshold,argmax,rankdice,rma]
    python evaluate.py loss=soft_dice force_rankdice=true reference_ignore=true ckpt_path=path/to/last.pt
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    from rankseg.engine import user_errors
    from rankseg.engine.evaluate import run_evaluation

    try:
        return run_evaluation(cfg)
    except user_errors() as err:
        # Setup problems (missing checkpoint/data, class-count mismatch) get one message and exit code 2.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
