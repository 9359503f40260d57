"""What bounds s_mu at 512 x 512 nearly collapsed: one single-core SVD.

Times, interleaved (benchmarks/timing.py), forward + backward of the
reference (`mean(tf.linalg.svd(x, compute_uv=False))`, whose values-only SVD
and gradient SVD depend only on x and so run side by side on 2 cores), of
`mean_singular_value`, and of the least any route that decomposes the batch
once can cost: the SVD with vectors of the deflated batch and its U V^T,
nothing else. Prints median times and the median per-round ratios
reference / each (> 1: faster than the reference).

    python benchmarks/bench_svd_bound.py [--size 512] [--rounds 21]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_step import value_and_gradient  # noqa: E402
from timing import interleaved  # noqa: E402


def nearly_collapsed(size, seed=0):
    """One shared direction plus 1e-3 noise, rows renormalized (bench_ops)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, size)) + 1e-3 * rng.normal(size=(size, size))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@tf.function
def one_svd_and_directions(y):
    singular, left, right = tf.linalg.svd(y)
    return tf.reduce_sum(singular), tf.matmul(left, right, transpose_b=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args(argv)
    x = nearly_collapsed(args.size)
    left, singular, right = np.linalg.svd(x)
    deflated = x - singular[0] * np.outer(left[:, 0], right[0])
    x32, y32 = tf.constant(x, tf.float32), tf.constant(deflated, tf.float32)
    reference = value_and_gradient(
        ops.singular_values.reference_mean_singular_value
    )
    ours = value_and_gradient(ops.mean_singular_value)

    def numpy(outputs):
        return [t.numpy() for t in outputs]

    runs = {
        "reference": lambda: numpy(reference(x32)),
        "ours": lambda: numpy(ours(x32)),
        "bound": lambda: numpy(one_svd_and_directions(y32)),
    }
    for run in runs.values():
        run()  # trace and warm up
    for name in ("ours", "bound"):
        summary, _ = interleaved(runs, args.rounds, "reference", name)
        print(
            f"{name}: {summary[f'{name}_ms']:.1f} ms, reference "
            f"{summary['reference_ms']:.1f} ms, {summary['ratio']:.2f}x "
            f"[{summary['ratio_min']:.2f}, {summary['ratio_max']:.2f}]"
        )


if __name__ == "__main__":
    main()
