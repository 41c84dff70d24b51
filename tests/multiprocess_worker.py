"""One process of tests/test_multiprocess.py (not a test module itself).

  python -m tests.multiprocess_worker OUT.npz NUM_PROCESSES PROCESS_ID PORT

Trains the tiny model for two epochs of global batch 16 with the library's
fit loop over every device of every process, then saves its parameters and
predictions.
"""

import sys


def main(out: str, num_processes: int, process_id: int, port: int) -> None:
  from nbajax.training import distributed
  distributed.initialize(num_processes=num_processes, process_id=process_id,
                         coordinator_address=f'localhost:{port}')
  import jax
  import numpy as np
  from flax import traverse_util

  from nbajax import data, training
  from tests.tiny import TinyNet, digits

  model = TinyNet()
  x, y = digits(64)
  tx = training.make_optimizer(lambda step: 0.05, momentum=0.9)
  state = training.create_train_state(model, tx, jax.random.key(0),
                                      (8, 8, 1))
  trainer = training.Trainer(
      training.make_ce_loss(model), batch_size=16, loop='step',
      augment_fn=lambda z, k: data.augment(z, k, crop_padding=1, flip=False,
                                           cutout=0))
  state, history = training.fit(state, x, y, trainer=trainer, epochs=2,
                                key=jax.random.key(1))
  preds = training.predict(model.apply, state.variables, x)
  flat = traverse_util.flatten_dict(jax.device_get(state.params), sep='/')
  np.savez(out, preds=preds, devices=len(jax.devices()),
           loss=history[-1]['train_loss'], **flat)


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
