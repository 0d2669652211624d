"""Train a segmentation model (paper §3); all logic lives in :func:`rankseg.engine.train.run_training`.

python train.py                                   # synthetic data, DeepLabV3+, CE
python train.py dataset=cityscapes model=pspnet loss=focal
python train.py model.encoder_name=resnet18 max_minutes=2
python train.py -m model=deeplabv3plus,pspnet,fcn8 loss=ce,focal,bce hydra/launcher=submitit_slurm
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> dict:
    from rankseg.engine import user_errors
    from rankseg.engine.train import run_training

    try:
        return run_training(cfg)
    except user_errors() as err:
        # Setup problems (missing data/weights/checkpoint) get one message and exit code 2, not a traceback.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
