"""SVMax's share of a real train step of the example model.

The metric-learning example's network (small CNN -> Dense(128) -> L2
normalization) on MNIST-sized images, b = 144 (P x K = 4 x 36), contrastive
loss, SGD with momentum, with `SVMaxRegularizer` on the embedding (through
`EmbeddingRegularization`). On a shared 2-core machine the whole-step ratio
with/without SVMax drowns in noise, so the share comes from op timings
inside the step instead: the SVMax term's forward+backward (what the step
adds: s_mu and its U V^T gradient on the step's own embedding batch) and
the whole train step, timed interleaved in one process
(`benchmarks/timing.py`), for two states of the model:

- random: the model as initialized (embeddings spread);
- collapsed: the embedding layer's kernel replaced by a rank-1 one plus
  1e-3 noise, so every image maps near one point (the early, large-lr
  moment SVMax exists for); s_mu then takes its deflated route.

The plain step (no SVMax) is timed too, for reference. Writes
`benchmarks/results/train_step.{md,json}`.

    python benchmarks/bench_train_step.py [--rounds 30] [--steps 10]
        [--batch-size 144] [--dim 128]
"""

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)
from timing import interleaved  # noqa: E402  (benchmarks/timing.py)

from keras_featreg import data  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import ops  # noqa: E402
from keras_featreg import regularizers  # noqa: E402
from keras_featreg.ops import singular_values  # noqa: E402
from keras_featreg.ops.scaling import rescale  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build(regularizer, args, input_shape):
    keras.utils.set_random_seed(0)
    model = models.build_embedding_model(
        input_shape, embedding_dim=args.dim, regularizer=regularizer
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
        loss=losses.ContrastiveLoss(margin=1.0),
    )
    return model


def collapse(model, seed=0):
    """Makes the embedding layer map every input near one direction."""
    layer = model.get_layer("embedding")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(1, kernel.shape[1]))
    column = rng.normal(size=(kernel.shape[0], 1))
    rank_one = column @ direction / np.sqrt(kernel.shape[0])
    noise = 1e-3 * rng.normal(size=kernel.shape) * np.abs(rank_one).mean()
    layer.set_weights([(rank_one + noise).astype("float32"), 0 * bias])


def value_and_gradient(fn, input_signature=None):
    """A `tf.function` of `(fn(x), d fn(x) / dx)`: forward + backward."""

    @tf.function(input_signature=input_signature)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)

    return step


def svmax_term(batch_size, dim, factor):
    """The SVMax term's forward+backward on an embedding batch."""
    regularizer = regularizers.SVMaxRegularizer(factor=factor)
    spec = tf.TensorSpec((batch_size, dim), tf.float32)
    return value_and_gradient(regularizer, (spec,))


def route_of(embeddings):
    matrix, _ = rescale(ops.l2_normalize(tf.constant(embeddings)))
    route = int(singular_values._decompose(matrix)[-1])
    return singular_values.ROUTES[route]


def measure(state, models_, x, y, args):
    plain, svmax = models_
    embeddings = svmax.predict(x, batch_size=len(x), verbose=0)
    term = svmax_term(*embeddings.shape, args.factor)
    inputs = tf.constant(embeddings)

    def steps(model):
        def run():
            for _ in range(args.steps):
                model.train_on_batch(x, y)

        return run

    def terms():
        for _ in range(args.steps):
            [t.numpy() for t in term(inputs)]

    runs = {"step": steps(svmax), "plain": steps(plain), "svmax": terms}
    for run in runs.values():  # trace and warm up
        run()
    summary, _ = interleaved(runs, args.rounds, "svmax", "step")
    spectrum = np.linalg.svd(
        embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True),
        compute_uv=False,
    )
    return {
        "state": state,
        "route": route_of(embeddings),
        "condition": float(spectrum[0] / max(spectrum[-1], 1e-300)),
        "step_ms": summary["step_ms"] / args.steps,
        "plain_ms": summary["plain_ms"] / args.steps,
        "svmax_ms": summary["svmax_ms"] / args.steps,
        "share": summary["ratio"],
        "share_min": summary["ratio_min"],
        "share_max": summary["ratio_max"],
    }


def markdown(report):
    lines = [
        f"CPU: {report['cpu']}, {report['cores']} cores; TF "
        f"{report['tensorflow']}, Keras {report['keras']}; b = "
        f"{report['batch_size']}, d = {report['dim']}; {report['rounds']} "
        f"interleaved rounds of {report['steps']} steps; load average "
        f"{report['load']}.",
        "",
        "| model state | s_mu route | cond | train step with SVMax ms | "
        "without ms | SVMax term ms | share of the step (median [min, "
        "max]) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['state']} | {row['route']} | {row['condition']:.1e} | "
            f"{row['step_ms']:.1f} | {row['plain_ms']:.1f} | "
            f"{row['svmax_ms']:.2f} | {100 * row['share']:.1f} % "
            f"[{100 * row['share_min']:.1f}, {100 * row['share_max']:.1f}] |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=144)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--factor", type=float, default=1.0)
    parser.add_argument(
        "--out", default=os.path.join(RESULTS, "train_step"), help="prefix"
    )
    args = parser.parse_args(argv)

    images, labels = data.load_mnist_5k()
    (x_train, y_train), _ = data.zero_shot_split(images, labels)
    p = 4
    k = args.batch_size // p
    batch = next(iter(data.pk_dataset(x_train, y_train, p=p, k=k, seed=0)))
    x, y = np.asarray(batch[0]), np.asarray(batch[1])
    input_shape = x_train.shape[1:]
    regularizer = regularizers.SVMaxRegularizer(factor=args.factor)
    pair = (
        build(None, args, input_shape),
        build(regularizer, args, input_shape),
    )
    rows = [measure("random", pair, x, y, args)]
    for model in pair:
        collapse(model)
    rows.append(measure("collapsed", pair, x, y, args))
    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    report = {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        "dim": args.dim,
        "rounds": args.rounds,
        "steps": args.steps,
        "load": load,
        "rows": rows,
    }
    text = markdown(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as file:
        file.write(text)
    with open(args.out + ".json", "w") as file:
        json.dump(report, file, indent=1)
    print(text)
    return report


if __name__ == "__main__":
    main()
