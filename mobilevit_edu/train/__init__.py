"""Training (paper §4.1): the recipe, one loop for every task, and the command line.

* :mod:`~mobilevit_edu.train.recipe` -- ``TrainConfig`` (the paper's defaults), the learning-rate
  schedule, AdamW, the EMA of the weights, ``History``;
* :mod:`~mobilevit_edu.train.loop` -- ``fit``: the one loop (device, seeding, batches, schedule,
  AMP, DDP, progress, metrics, checkpoints, resume) around a task's ``step`` and ``evaluate``;
* :mod:`~mobilevit_edu.train.classification` -- the classification task, ``evaluate``, ``train``
  and ``train_model`` (chapters 10 and 11); detection and segmentation bring their own tasks
  (``mobilevit_edu.detection.train``, ``mobilevit_edu.segmentation.train``);
* :mod:`~mobilevit_edu.train.distributed` -- the sharded batch sampler, DDP helpers, RNG states;
* :mod:`~mobilevit_edu.train.cli` -- ``python -m mobilevit_edu.train --help``.
"""

from mobilevit_edu.train.classification import evaluate, train, train_model
from mobilevit_edu.train.cli import main
from mobilevit_edu.train.distributed import (
    EpochBatchSampler,
    distributed_context,
    rng_state,
    set_rng_state,
)
from mobilevit_edu.train.loop import StepOutput, Task, fit
from mobilevit_edu.train.recipe import EMA, History, TrainConfig, build_optimizer, lr_at, schedule

__all__ = [
    "TrainConfig", "History", "EMA", "EpochBatchSampler", "lr_at", "schedule", "build_optimizer",
    "Task", "StepOutput", "fit", "train", "train_model", "evaluate", "distributed_context",
    "rng_state", "set_rng_state", "main",
]
