"""The train job: a clean model (`python -m experiments.train`).

Layout of its workdir:

    workdir/checkpoints/    the model (Orbax, one step per epoch)
    workdir/results.json    test accuracy, per-epoch history, config
"""

from typing import Any

import ml_collections

from nbajax.pipeline import model_runs


def train_clean(config: ml_collections.ConfigDict, workdir: str, *,
                overwrite: bool = False) -> dict[str, Any]:
  """Trains (or reuses) a clean model of `config` in `workdir`.

  Args:
    config: experiment config (seed, data, model, train).
    workdir: run directory; a finished run of the same config is reused.
    overwrite: start over even when `workdir` holds a finished run.

  Returns:
    The results dict written to `workdir/results.json`.

  Raises:
    UserError: a bad config or workdir, or the workdir in use.
  """
  return model_runs.clean_model(config, workdir, overwrite=overwrite)
