"""Evaluate a trained run with several prediction rules in one pass (paper §2); all logic lives in
:func:`rankseg.engine.evaluate.run_evaluation`.

    python evaluate.py                                          # synthetic, threshold/argmax/rankdice
    python evaluate.py dataset=cityscapes model=pspnet loss=focal predict=[threshold,argmax,rankdice,rma]
    python evaluate.py -m seed=0,1,2                            # the runs of train.py -m seed=0,1,2
    python evaluate.py loss=soft_dice force_rankdice=true reference_ignore=true ckpt_path=path/to/run

The run is the one the same overrides trained (or ckpt_path=); results go to
results/runs/{dataset}/{model}/{loss}/{run}/metrics.json. Exit status 2: a setup problem (one message).
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
        # Setup problems (bad config values, missing or unfit checkpoint/data) get one message and exit code 2.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
