"""Cost of SVMax inside a real train step of the example model.

The metric-learning example's network (small CNN -> Dense(128) -> L2
normalization) on MNIST-sized images, b = 144 (P x K = 4 x 36), contrastive
loss, SGD with momentum: the same train step with and without
`SVMaxRegularizer` on the embedding (through `EmbeddingRegularization`),
timed interleaved in one process (blocks of steps, alternating which model
goes first) and summarized as the median of the per-pair ratios.

    python benchmarks/bench_train_step.py [--pairs 30] [--steps 10]
        [--backbone small_cnn] [--batch-size 144] [--dim 128]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)

from keras_featreg import data  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import regularizers  # noqa: E402


def build(regularizer, args, input_shape):
    keras.utils.set_random_seed(0)
    model = models.build_embedding_model(
        input_shape,
        backbone=args.backbone,
        embedding_dim=args.dim,
        regularizer=regularizer,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
        loss=losses.ContrastiveLoss(margin=1.0),
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=144)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--factor", type=float, default=1.0)
    args = parser.parse_args(argv)

    images, labels = data.load_mnist_5k()
    (x_train, y_train), _ = data.zero_shot_split(images, labels)
    input_shape = x_train.shape[1:]
    if args.backbone != "small_cnn":
        input_shape = (64, 64, 3)
        x_train = np.repeat(
            tf.image.resize(x_train, (64, 64)).numpy(), 3, axis=-1
        )
    p = 4
    k = args.batch_size // p
    batch = next(iter(data.pk_dataset(x_train, y_train, p=p, k=k, seed=0)))
    x, y = batch[0], batch[1]

    plain = build(None, args, input_shape)
    svmax = build(
        regularizers.SVMaxRegularizer(factor=args.factor), args, input_shape
    )
    for model in (plain, svmax):  # trace and warm up
        for _ in range(5):
            model.train_on_batch(x, y)

    def block(model):
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        return (time.perf_counter() - start) / args.steps

    plain_times, svmax_times, ratios = [], [], []
    for i in range(args.pairs):
        if i % 2:
            t_svmax, t_plain = block(svmax), block(plain)
        else:
            t_plain, t_svmax = block(plain), block(svmax)
        plain_times.append(t_plain)
        svmax_times.append(t_svmax)
        ratios.append(t_svmax / t_plain)

    overhead = 100 * (statistics.median(ratios) - 1)
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; TF {tf.__version__}, "
        f"Keras {keras.__version__}"
    )
    print(
        f"backbone={args.backbone}, b={args.batch_size}, d={args.dim}, "
        f"{args.pairs} interleaved pairs x {args.steps} steps"
    )
    print("| train step | median time (ms) |")
    print("|---|---|")
    print(f"| without SVMax | {1e3 * statistics.median(plain_times):.2f} |")
    print(f"| with SVMax | {1e3 * statistics.median(svmax_times):.2f} |")
    print(f"| overhead (median of per-pair ratios) | {overhead:+.1f} % |")
    return overhead


if __name__ == "__main__":
    main()
