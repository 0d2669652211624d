"""Train a segmentation model (paper §3); all logic lives in :func:`rankseg.engine.train.run_training`.

python train.py                                   # synthetic data, DeepLabV3+, CE
python train.py dataset=cityscapes model=pspnet loss=focal
python train.py model.encoder_name=resnet18 max_minutes=2
python train.py -m seed=0,1,2                     # three runs, three checkpoints
python train.py -m model=deeplabv3plus,pspnet,fcn8 loss=ce,focal,bce hydra/launcher=submitit_slurm

Exit status: 0 done (or stopped by max_iters/max_minutes, checkpoint saved); 2 a setup problem (one message);
128 + N stopped by signal N after saving the checkpoint: 130 SIGINT (Ctrl-C), 143 SIGTERM, 140 SIGUSR2 (submitit's
preemption signal; under submitit the job is requeued). Running the same command again resumes.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> dict:
    from rankseg.engine import TrainingInterrupted, user_errors
    from rankseg.engine.train import run_training

    try:
        return run_training(cfg)
    except user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingInterrupted as stop:
        sys.exit(stop.exit_status)  # the message (where the checkpoint is, how to resume) is already printed


if __name__ == "__main__":
    main()
