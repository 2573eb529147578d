"""The training engine behind `srcaco2.trainers.fit.fit`: one step, the loop around it, validation.

* `step` — `train_step` (forward, loss, backward, clip, optimiser, EMA: device work only, no host
  read) and `batch_to_device` (non-blocking copies of pinned batches);
* `monitor` — `StepMonitor`: the per-step values stay on the device and are read in one transfer
  every ``train.sync_every`` steps; a non-finite loss raises `TrainingDivergedError` naming its
  step and batch;
* `validation` — `Validator` (validation loader and evaluation copy built once) and `better`;
* `loop` — `TrainLoop`: epochs, scheduler, logs, validation, checkpoints (never non-finite).
"""

from srcaco2.trainers.engine.monitor import StepMonitor, TrainingDivergedError
from srcaco2.trainers.engine.step import StepContext, StepOutput, batch_to_device, train_step

__all__ = [
    "StepContext",
    "StepOutput",
    "StepMonitor",
    "TrainingDivergedError",
    "batch_to_device",
    "train_step",
]
