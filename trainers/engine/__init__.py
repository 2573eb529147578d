"""The training engine behind `srcaco2.trainers.fit.fit`: one step, the loop around it, validation.

* `step` — `train_step` (forward, loss, backward, clip, optimiser, EMA: device work only, no host
  read) and `batch_to_device` (non-blocking copies of pinned batches);
* `monitor` — `StepMonitor`: the per-step values stay on the device and are read in one transfer
  every ``train.sync_every`` steps;
* `guard` — `DivergenceGuard`: a non-finite loss, an exploding output or gradient stops the run
  (`TrainingDivergedError` naming the step, the batch and the keys that help) or, under the paper
  recipe, is reported as the original code would carry on;
* `validation` — `Validator` (validation loader and evaluation copy built once) and `better`;
* `loop` — `TrainLoop`: epochs, scheduler, logs, validation, checkpoints (never non-finite).
"""

from srcaco2.trainers.engine.guard import DivergenceGuard, TrainingDivergedError
from srcaco2.trainers.engine.monitor import StepMonitor
from srcaco2.trainers.engine.step import StepContext, StepOutput, batch_to_device, train_step

__all__ = [
    "StepContext",
    "StepOutput",
    "StepMonitor",
    "DivergenceGuard",
    "TrainingDivergedError",
    "batch_to_device",
    "train_step",
]
