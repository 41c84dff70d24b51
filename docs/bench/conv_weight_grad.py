"""Weight gradient of a 3x3 convolution: XLA's against explicit products.

The measurement behind docs/design.md §8's line on writing the weight
gradient by hand. For each 3x3 convolution shape of WRN-16-1 at batch 64
it times, on one device, after a compiling call (median of `--repeats`):

* `forward`: the convolution itself (NHWC, HWIO, stride 1, SAME);
* `xla`: its weight gradient as `jax.vjp` gives it, i.e. what a training
  step runs;
* `im2col`: the nine shifted views of the padded input gathered into one
  [N*H*W, 9*C] matrix, then one product with the output gradient
  [N*H*W, C'];
* `shifted`: nine products, one per kernel offset, without the gathered
  matrix.

and the largest difference of the two hand-written gradients from XLA's,
relative to its largest entry. The CLIs' XLA:CPU flag is applied as they
apply it (`nbajax.training.xla_cpu.tune`). Run from the repository root:

  python docs/bench/conv_weight_grad.py [--repeats 20]
"""

import argparse
import statistics
import time

from nbajax.training import xla_cpu

if __name__ == '__main__':  # Before JAX starts; an importer keeps its own.
  xla_cpu.tune()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

# (height = width, input channels, output channels) of WRN-16-1's 3x3
# convolutions on 32x32 images.
SHAPES = ((32, 16, 16), (32, 16, 32), (16, 32, 32), (16, 32, 64),
          (8, 64, 64))
BATCH = 64


def conv(x, w):
  """[N, H, W, C] x [3, 3, C, C'] -> [N, H, W, C']."""
  return jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def weight_grad_xla(x, w, g):
  """d<conv(x, w), g>/dw as XLA computes it: [3, 3, C, C']."""
  _, vjp = jax.vjp(lambda v: conv(x, v), w)
  return vjp(g)[0]


def _views(x):
  """The nine [N, H, W, C] views of the zero-padded x, row-major offsets."""
  _, h, wd, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [xp[:, i:i + h, j:j + wd, :] for i in range(3) for j in range(3)]


def weight_grad_im2col(x, w, g):
  """The same gradient as one [9C, NHW] x [NHW, C'] product."""
  del w  # Only its shape, which the output gradient implies.
  n, h, wd, c = x.shape
  patches = jnp.stack(_views(x), axis=3).reshape(n * h * wd, 9 * c)
  return (patches.T @ g.reshape(n * h * wd, -1)).reshape(3, 3, c, -1)


def weight_grad_shifted(x, w, g):
  """The same gradient as nine [C, NHW] x [NHW, C'] products."""
  del w
  n, h, wd, c = x.shape
  g2 = g.reshape(n * h * wd, -1)
  taps = [v.reshape(n * h * wd, c).T @ g2 for v in _views(x)]
  return jnp.stack(taps).reshape(3, 3, c, -1)


def median_ms(fn, *args, repeats):
  """Median wall time of `fn(*args)` in ms, after one compiling call."""
  fn = jax.jit(fn)
  fn(*args).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args).block_until_ready()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args()
  if args.repeats < 1:
    parser.error(f'--repeats must be >= 1, got {args.repeats}')
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind}, '
        f'batch {BATCH}, median ms of {args.repeats}')
  print('| shape | forward | xla | im2col | shifted | rel. diff |')
  print('|---|---:|---:|---:|---:|---:|')
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  for hw, c, c_out in SHAPES:
    x = jax.random.normal(keys[0], (BATCH, hw, hw, c))
    w = jax.random.normal(keys[1], (3, 3, c, c_out))
    g = jax.random.normal(keys[2], (BATCH, hw, hw, c_out))
    ref = weight_grad_xla(x, w, g)
    scale = float(jnp.max(jnp.abs(ref)))
    diff = max(float(jnp.max(jnp.abs(f(x, w, g) - ref))) / scale
               for f in (weight_grad_im2col, weight_grad_shifted))
    ms = [median_ms(conv, x, w, repeats=args.repeats)]
    ms += [median_ms(f, x, w, g, repeats=args.repeats)
           for f in (weight_grad_xla, weight_grad_im2col,
                     weight_grad_shifted)]
    cells = ' | '.join(f'{m:.2f}' for m in ms)
    print(f'| {hw}x{hw}, {c}->{c_out} | {cells} | {diff:.1e} |', flush=True)


if __name__ == '__main__':
  main()
