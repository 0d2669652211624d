"""Experiment engine: building components from configs, the training and evaluation loops, checkpoint and
run-file I/O. Entry points: :func:`rankseg.engine.train.run_training`,
:func:`rankseg.engine.evaluate.run_evaluation` (``train.py`` / ``evaluate.py`` are thin Hydra shims).
"""

from rankseg.engine.checkpoint import CheckpointError, CheckpointNotFoundError, ClassCountMismatchError
from rankseg.engine.config_checks import ConfigError
from rankseg.engine.signals import TrainingInterrupted

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "ClassCountMismatchError",
    "ConfigError",
    "TrainingInterrupted",
    "user_errors",
]


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions caused by the user's setup (bad config values, missing or corrupt files, mismatches): reported
    in one message, exit status 2."""
    from rankseg.data import DatasetLayoutError
    from rankseg.models.weights import MissingWeightsError

    return (CheckpointError, ConfigError, DatasetLayoutError, MissingWeightsError)
