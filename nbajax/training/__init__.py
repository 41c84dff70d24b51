"""Training: state, optimizer, pure steps, sharded epoch loop."""

from nbajax.training.fit import TrainingInterrupted, fit
from nbajax.training.loop import (LOOPS, Trainer, check_finite, epoch_metrics,
                                  log_epoch, predict, resolve_loop)
from nbajax.training.optim import (OPTIMIZERS, SCHEDULES, make_optimizer,
                                   make_schedule)
from nbajax.training.sharding import make_mesh, replicate
from nbajax.training.state import TrainState, create_train_state
from nbajax.training.steps import (classification_sums, make_ce_loss,
                                   to_float, train_step)
