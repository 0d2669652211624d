"""Predict a folder of images with a trained run and any prediction rules; all logic lives in
:func:`rankseg.engine.predict_images.run_prediction`.

    python predict.py input=path/to/images                               # synthetic run, rule rma
    python predict.py input='photos/*.jpg' predict=[rma,threshold] save_overlays=true output=outputs/photos
    python predict.py dataset=voc2012 model=pspnet loss=ce input=imgs/ ckpt_path=path/to/run

The run is the one the same overrides trained (or ckpt_path=); one PNG per image (palette label map, or one 0/255
mask per class for multi-label rules) and predictions.json go to output= (one folder per rule when there are
several), by default outputs/predictions/{dataset}/{model}/{loss}/{run}/{rule}/. Exit status 2: a setup problem
(one message).
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="predict_images")
def main(cfg: DictConfig) -> dict:
    from rankseg.engine import user_errors
    from rankseg.engine.predict_images import run_prediction

    try:
        return run_prediction(cfg)
    except user_errors() as err:
        # Setup problems (bad config values or inputs, missing or unfit checkpoint) get one message and exit code 2.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
