"""What bounds s_mu at 512 x 512 nearly collapsed: one single-core SVD.

Times, interleaved, forward + backward of the reference
(`mean(tf.linalg.svd(x, compute_uv=False))`, whose values-only SVD and
gradient SVD run side by side on 2 cores), of `mean_singular_value` and of
the least any one-decomposition route can do: the SVD with vectors of the
deflated batch and its U V^T, nothing else. Prints the median times and the
median ratios reference / each (> 1: faster than the reference).

    python benchmarks/bench_svd_bound.py [--size 512] [--repeats 21]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg import ops  # noqa: E402

REFERENCE = ops.singular_values.reference_mean_singular_value


def nearly_collapsed(size, seed=0):
    """One shared direction plus 1e-3 noise, rows renormalized (bench_ops)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, size)) + 1e-3 * rng.normal(size=(size, size))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def value_and_gradient(fn):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)

    return step


@tf.function
def one_svd_and_directions(y):
    singular, left, right = tf.linalg.svd(y)
    return tf.reduce_sum(singular), tf.matmul(left, right, transpose_b=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    x = nearly_collapsed(args.size)
    left, singular, right = np.linalg.svd(x)
    deflated = x - singular[0] * np.outer(left[:, 0], right[0])
    x32 = tf.constant(x, tf.float32)
    runs = {
        "reference": (value_and_gradient(REFERENCE), x32),
        "ours": (value_and_gradient(ops.mean_singular_value), x32),
        "SVD of the deflated batch + U V^T only": (
            one_svd_and_directions,
            tf.constant(deflated, tf.float32),
        ),
    }
    for fn, inputs in runs.values():
        fn(inputs)  # trace and warm up
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (fn, inputs) in runs.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn(inputs))
            times[name].append(time.perf_counter() - start)
    reference = np.array(times["reference"])
    for name, values in times.items():
        values = np.array(values)
        ratio = np.median(reference / values)
        print(f"{name}: {np.median(values) * 1e3:.1f} ms, {ratio:.2f}x")


if __name__ == "__main__":
    main()
