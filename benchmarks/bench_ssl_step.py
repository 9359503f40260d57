"""Cost of a VICReg train step, and whether the input pipeline keeps up.

1. A full `TwoViewModel` train step (both views through a small encoder and
   a projector whose last width is d, the loss, its gradient, the update)
   with `VICRegLoss` (the covariance through the b x b Gram when b < d)
   against the same step with the reference loss (the d x d covariance of
   facebookresearch/vicreg, `keras_featreg.ops.reference_vicreg_loss`), at
   (b, d) = (256, 2048) and (512, 8192). Same weights, same batch; the two
   models are timed interleaved (blocks of steps, alternating which goes
   first) and summarized as the median of the per-pair ratios.
2. The default example's (`examples/ssl_vicreg.py`) input pipeline
   (`two_view_dataset` on MNIST-5k, 28 x 28 views, b = 256) in source
   images per second, and the example's `fit` on the pipeline against the
   same `fit` on views made beforehand and held in memory (interleaved
   epochs, median of per-pair ratios): the pipeline must not be the
   bottleneck.

    python benchmarks/bench_ssl_step.py [--pairs 5] [--steps 2]
        [--shapes 256x2048 512x8192] [--hidden 512] [--pipeline-pairs 3]
        [--skip-step] [--skip-pipeline]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import timing  # noqa: E402  (benchmarks/timing.py)
from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)

from keras_featreg import layers  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import ops  # noqa: E402

EXAMPLES = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "examples"
)


@keras.saving.register_keras_serializable(package="keras_featreg_benchmarks")
class ReferenceVICRegLoss(keras.losses.Loss):
    """The reference VICReg loss (d x d covariance, autodiff), per sample.

    The batch-level loss is broadcast onto every row, so Keras' mean
    reduction returns it unchanged.
    """

    def __init__(self, name="reference_vicreg_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        loss = ops.reference_vicreg_loss(y_true, y_pred)
        return tf.broadcast_to(loss, tf.shape(y_true)[:1])


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)}"
    return f"CPU {cpu_name()}, {os.cpu_count()} cores"


def small_encoder(input_shape):
    """Two conv blocks and global pooling: a cheap encoder (64 features)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="encoder")


def build_model(loss, dim, hidden, input_shape):
    keras.utils.set_random_seed(0)  # both models start from the same weights
    model = models.TwoViewModel(
        small_encoder(input_shape),
        layers.build_projector((hidden, hidden, dim)),
        loss,
        track_terms=False,  # time the loss, its gradient and the update only
    )
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    return model


def interleaved(run_a, run_b, pairs, steps):
    """Median block times of a and b and the median of per-pair ratios b/a."""

    def block(run):
        def blocks():
            for _ in range(steps):
                run()

        return blocks

    summary, _ = timing.interleaved(
        {"a": block(run_a), "b": block(run_b)}, pairs, "b", "a"
    )
    return (
        summary["a_ms"] / 1e3 / steps,
        summary["b_ms"] / 1e3 / steps,
        summary["ratio"],
    )


def bench_train_step(args):
    print("\n### Train step: VICRegLoss against the d x d reference\n")
    print(
        f"Small CNN encoder on 28 x 28 x 1 inputs, projector "
        f"({args.hidden}, {args.hidden}, d), SGD; {args.pairs} interleaved "
        f"pairs x {args.steps} steps.\n"
    )
    print(
        "| b | d | VICRegLoss step (ms) | reference step (ms) | "
        "speed-up (median of per-pair ratios) | loss difference |"
    )
    print("|---|---|---|---|---|---|")
    input_shape = (28, 28, 1)
    rows = []
    for shape in args.shapes:
        batch_size, dim = (int(v) for v in shape.split("x"))
        rng = np.random.default_rng(0)
        view_a = tf.constant(
            rng.integers(0, 256, (batch_size,) + input_shape), tf.float32
        )
        view_b = tf.constant(
            rng.integers(0, 256, (batch_size,) + input_shape), tf.float32
        )
        fast = build_model(losses.VICRegLoss(), dim, args.hidden, input_shape)
        reference = build_model(
            ReferenceVICRegLoss(), dim, args.hidden, input_shape
        )
        # Same weights, same batch: the same loss (before any update).
        z_a, z_b = fast((view_a, view_b), training=True)
        difference = abs(
            float(losses.VICRegLoss()(z_a, z_b))
            - float(ops.reference_vicreg_loss(z_a, z_b))
        )
        for model in (fast, reference):  # trace and warm up
            for _ in range(2):
                model.train_on_batch(view_a, view_b)
        t_fast, t_reference, ratio = interleaved(
            lambda m=fast, a=view_a, b=view_b: m.train_on_batch(a, b),
            lambda m=reference, a=view_a, b=view_b: m.train_on_batch(a, b),
            args.pairs,
            args.steps,
        )
        rows.append((batch_size, dim, t_fast, t_reference, ratio))
        print(
            f"| {batch_size} | {dim} | {1e3 * t_fast:.0f} | "
            f"{1e3 * t_reference:.0f} | {ratio:.2f}x | {difference:.1e} |",
            flush=True,
        )
    return rows


def bench_pipeline(args):
    sys.path.insert(0, EXAMPLES)
    import ssl_vicreg

    example = ssl_vicreg.parse_args([])
    images = ssl_vicreg.load_mnist5k()[0]
    input_shape = (example.image_size, example.image_size, 1)
    print("\n### Input pipeline against the default example's training\n")
    print(
        f"{example.dataset}: {len(images)} images, views "
        f"{example.image_size} x {example.image_size}, b = "
        f"{example.batch_size}, backbone {example.backbone}, projector "
        f"{example.projector}, VICRegLoss, LARS.\n"
    )

    dataset = ssl_vicreg.two_views(images, example, seed=0)
    steps = int(dataset.cardinality())
    for _ in dataset:  # warm up: trace the augmentation
        pass
    start = time.perf_counter()
    count = 0
    for _ in range(args.pipeline_epochs):
        for view_a, _ in dataset:
            count += int(view_a.shape[0])
    pipeline = count / (time.perf_counter() - start)

    def model():
        keras.utils.set_random_seed(0)
        two_view = models.TwoViewModel(
            ssl_vicreg.build_encoder(example.backbone, input_shape),
            layers.build_projector(example.projector),
            losses.VICRegLoss(),
        )
        two_view.compile(optimizer=ssl_vicreg.build_optimizer(example, steps))
        return two_view

    # One epoch of views made beforehand and held in memory: the same `fit`
    # without any augmentation work.
    views = [batch for batch in dataset]
    cached = tf.data.Dataset.from_tensor_slices(
        (
            tf.concat([a for a, _ in views], 0),
            tf.concat([b for _, b in views], 0),
        )
    ).batch(example.batch_size, drop_remainder=True)
    # As the example: one repeated dataset, `steps` steps per epoch.
    cached, pipelined = cached.repeat(), dataset.repeat()
    with_cache, with_pipeline = model(), model()
    for two_view, data in ((with_cache, cached), (with_pipeline, pipelined)):
        two_view.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    epochs = args.pipeline_epochs
    images = epochs * steps * example.batch_size
    t_cached, t_pipeline, ratio = interleaved(
        lambda: with_cache.fit(
            cached, epochs=epochs, steps_per_epoch=steps, verbose=0
        ),
        lambda: with_pipeline.fit(
            pipelined, epochs=epochs, steps_per_epoch=steps, verbose=0
        ),
        args.pipeline_pairs,
        1,
    )
    print("| what | source images/s (each gives 2 views) |")
    print("|---|---|")
    print(f"| input pipeline alone (two_view_dataset) | {pipeline:.0f} |")
    print(f"| `fit` on views made beforehand | {images / t_cached:.0f} |")
    print(f"| `fit` on the pipeline | {images / t_pipeline:.0f} |")
    print(
        f"\nThe pipeline alone delivers {pipeline * t_cached / images:.1f}x "
        "what training consumes; `fit` on the pipeline takes "
        f"{ratio:.2f}x the time of `fit` on views made beforehand (median "
        f"of {args.pipeline_pairs} interleaved pairs of {epochs}-epoch `fit` "
        "calls; both share the same CPU cores)."
    )
    return pipeline, images / t_cached, images / t_pipeline, ratio


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--shapes", nargs="+", default=["256x2048", "512x8192"], help="bxd"
    )
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--pipeline-epochs", type=int, default=2)
    parser.add_argument("--pipeline-pairs", type=int, default=3)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument(
        "--out",
        default=os.path.join(timing.RESULTS, "ssl_step.md"),
        help="results file (what is printed)",
    )
    args = parser.parse_args(argv)
    results = {}
    with timing.printed_to(args.out):
        print(
            f"{device_name()}; TF {tf.__version__}, Keras {keras.__version__}"
        )
        if not args.skip_step:
            results["train_step"] = bench_train_step(args)
        if not args.skip_pipeline:
            results["pipeline"] = bench_pipeline(args)
    return results


if __name__ == "__main__":
    main()
