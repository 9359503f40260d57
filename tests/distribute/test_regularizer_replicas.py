"""Batch regularizers under MirroredStrategy (2 logical CPUs).

The default (`global_batch=True`) must train exactly as one device on the
global batch, on both paths (`activity_regularizer=` and
`EmbeddingRegularization`), for SVMax and VICReg: one SGD step is compared
with the update computed by hand on one device (weights minus the learning
rate times the gradient of `mse + penalty(global batch)`), also when one
replica holds no rows (a last batch of one row, split [1, 0]).

Keras 3.15 itself cannot train a batch split unevenly between replicas that
both hold rows (e.g. 7 rows as [4, 3]: `AddN` shape error in `fit`, with a
plain Dense model and no regularizer), so only even and [1, 0] splits are
tested.
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import distribute
from keras_featreg import layers
from keras_featreg import regularizers

LEARNING_RATE = 0.5
FEATURES, UNITS = 6, 5

REGULARIZERS = {
    "svmax": lambda **kw: regularizers.SVMaxRegularizer(1.0, **kw),
    "svmax_unbounded": lambda **kw: regularizers.SVMaxRegularizer(
        1.0, bounded=False, **kw
    ),
    "vicreg": lambda **kw: regularizers.VICRegRegularizer(1.0, 0.5, **kw),
}


def mirrored():
    return distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])


def build(path, regularizer):
    dense_kwargs = {}
    after = []
    if path == "activity":
        dense_kwargs["activity_regularizer"] = regularizer
    else:
        after = [layers.EmbeddingRegularization(regularizer)]
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                UNITS,
                kernel_initializer=keras.initializers.GlorotUniform(1),
                bias_initializer=keras.initializers.RandomNormal(seed=2),
                **dense_kwargs,
            ),
            *after,
        ]
    )


def fit_weights(strategy, path, regularizer, x, y, batch_size):
    with strategy.scope():
        model = build(path, regularizer)
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    history = model.fit(
        x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0
    )
    return [np.asarray(w) for w in model.weights[:2]], history.history


def hand_update(regularizer, x, y, batch_size, replicas=1):
    """SGD by hand: W -= lr * grad(mse + penalty(batch)), batch by batch.

    The penalty is the regularizer's formula on the whole (global) batch.
    Keras' compiled `mse` is each replica's mean divided by the number of
    replicas: `replicas=2` splits a full batch in halves and a batch of one
    row as [1, 0] (what MirroredStrategy does).
    """
    model = build("activity", None)
    kernel, bias = (tf.Variable(np.asarray(w)) for w in model.weights[:2])
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start : start + batch_size])
        yb = tf.constant(y[start : start + batch_size])
        rows = int(xb.shape[0])
        if replicas == 1 or rows == 1:
            splits = [rows]
        else:
            splits = [rows // 2, rows - rows // 2]
        with tf.GradientTape() as tape:
            out = tf.matmul(xb, kernel) + bias
            squares = tf.square(out - yb)
            loss = 0.0
            offset = 0
            for size in splits:
                part = squares[offset : offset + size]
                loss += tf.reduce_mean(part) / replicas
                offset += size
            loss += regularizer.penalty(out)
        grads = tape.gradient(loss, [kernel, bias])
        kernel.assign_sub(LEARNING_RATE * grads[0])
        bias.assign_sub(LEARNING_RATE * grads[1])
    return [kernel.numpy(), bias.numpy()]


def data(samples):
    rng = np.random.default_rng(samples)
    x = rng.normal(size=(samples, FEATURES)).astype("float32")
    y = rng.normal(size=(samples, UNITS)).astype("float32")
    return x, y


class GlobalBatchTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.product(
        name=sorted(REGULARIZERS),
        path=("activity", "wrapper"),
    )
    def test_one_sgd_step_equals_the_hand_computed_update(self, name, path):
        # 9 samples, batch size 8: a first step split evenly [4, 4], then a
        # last batch of one row split [1, 0] (an empty replica). The final
        # weights carry both steps, so an error in either shows.
        samples, batch_size = 9, 8
        x, y = data(samples)
        regularizer = REGULARIZERS[name]()
        got, history = fit_weights(
            mirrored(), path, regularizer, x, y, batch_size
        )
        expected = hand_update(regularizer, x, y, batch_size, replicas=2)
        for g, e in zip(got, expected, strict=True):
            self.assertAllClose(g, e, atol=1e-5, rtol=1e-5)
        self.assertTrue(np.isfinite(history["loss"][-1]))
        # The update is not the one without the regularizer.
        plain = hand_update(
            regularizers.SVMaxRegularizer(0.0), x, y, batch_size, replicas=2
        )
        self.assertNotAllClose(got[0], plain[0], atol=1e-4)

    @parameterized.parameters("activity", "wrapper")
    def test_per_replica_mode_is_the_replicas_own_batch(self, path):
        x, y = data(8)
        regularizer = REGULARIZERS["svmax"](global_batch=False)
        got, _ = fit_weights(mirrored(), path, regularizer, x, y, 8)
        # By hand: each replica's half with its own penalty; Keras averages
        # the replicas' losses.
        model = build("activity", None)
        kernel, bias = (tf.Variable(np.asarray(w)) for w in model.weights[:2])
        with tf.GradientTape() as tape:
            out = tf.matmul(x, kernel) + bias
            loss = tf.reduce_mean(tf.square(out - y))
            loss += (
                regularizer.penalty(out[:4]) + regularizer.penalty(out[4:])
            ) / 2.0
        grads = tape.gradient(loss, [kernel, bias])
        expected = [
            kernel.numpy() - LEARNING_RATE * grads[0].numpy(),
            bias.numpy() - LEARNING_RATE * grads[1].numpy(),
        ]
        for g, e in zip(got, expected, strict=True):
            self.assertAllClose(g, e, atol=1e-5, rtol=1e-5)
        global_, _ = fit_weights(
            mirrored(), path, REGULARIZERS["svmax"](), x, y, 8
        )
        self.assertNotAllClose(got[0], global_[0], atol=1e-4)

    def test_wrapper_logs_the_global_penalty(self):
        x, y = data(8)
        strategy = mirrored()
        regularizer = REGULARIZERS["svmax"]()
        with strategy.scope():
            model = build("wrapper", regularizer)
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        wrapper = model.layers[-1]
        out = model.layers[0](x)
        self.assertAllClose(
            wrapper.last_penalty, regularizer.penalty(out), rtol=1e-5
        )

    def test_config_round_trip(self):
        for make in REGULARIZERS.values():
            regularizer = make(global_batch=False)
            config = regularizer.get_config()
            self.assertFalse(config["global_batch"])
            revived = type(regularizer).from_config(config)
            self.assertFalse(revived.global_batch)
            self.assertTrue(make().global_batch)
        with self.assertRaisesRegex(TypeError, "Received: global_batch=1"):
            regularizers.SVMaxRegularizer(global_batch=1)
        with self.assertRaisesRegex(TypeError, "Received: global_batch='no'"):
            regularizers.VICRegRegularizer(global_batch="no")


class EmptyReplicaTest(parameterized.TestCase, tf.test.TestCase):
    def test_metric_skips_an_empty_replica(self):
        from keras_featreg import metrics
        from keras_featreg import ops

        x, y = data(9)
        strategy = mirrored()
        with strategy.scope():
            model = build("activity", None)
            model.compile(
                optimizer="sgd",
                loss="mse",
                metrics=[metrics.MeanSingularValue()],
            )
        result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        out = model.layers[0](x).numpy()
        # Batches: [4, 4] rows, then [1, 0]: three non-empty batches.
        expected = np.mean(
            [
                float(ops.mean_singular_value(ops.l2_normalize(part)))
                for part in (out[:4], out[4:8], out[8:])
            ]
        )
        self.assertAllClose(result["mean_singular_value"], expected, rtol=1e-5)

    def test_two_view_model_trains_a_last_global_batch_of_two(self):
        from keras_featreg import losses
        from keras_featreg import models

        rng = np.random.default_rng(0)
        x_a = rng.normal(size=(34, FEATURES)).astype("float32")
        x_b = (x_a + 0.3 * rng.normal(size=x_a.shape)).astype("float32")
        dataset = tf.data.Dataset.from_tensor_slices((x_a, x_b)).batch(8)

        def run(strategy):
            with strategy.scope():
                encoder = build("activity", None)
                model = models.TwoViewModel(
                    encoder, keras.layers.Identity(), loss=losses.VICRegLoss()
                )
                model.compile(optimizer=keras.optimizers.SGD(0.01))
            history = model.fit(dataset, epochs=1, verbose=0)
            return history.history, [np.asarray(w) for w in model.weights]

        single, single_weights = run(tf.distribute.get_strategy())
        replicated, replicated_weights = run(mirrored())
        # A last global batch of one row is refused clearly.
        last_row = dataset.unbatch().take(33).batch(8)  # last: [1, 0]
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "at least 2 images per batch"
        ):
            with mirrored().scope():
                model = models.TwoViewModel(
                    build("activity", None),
                    keras.layers.Identity(),
                    loss=losses.VICRegLoss(),
                )
                model.compile(optimizer=keras.optimizers.SGD(0.01))
            model.fit(last_row, epochs=1, verbose=0)
        for key in ("loss", "variance", "covariance", "mean_singular_value"):
            self.assertAllClose(replicated[key], single[key], rtol=1e-5)
        for got, expected in zip(
            replicated_weights, single_weights, strict=True
        ):
            self.assertAllClose(got, expected, atol=1e-5)


class TwoRegularizedLayersTest(parameterized.TestCase, tf.test.TestCase):
    """Two gathers in one forward pass: each layer's loss stays its own."""

    @parameterized.parameters("activity", "wrapper")
    def test_one_sgd_step(self, path):
        x, y = data(8)
        first = regularizers.SVMaxRegularizer(1.0)
        second = regularizers.VICRegRegularizer(1.0, 0.5)

        def build_two():
            init = keras.initializers.GlorotUniform
            if path == "activity":
                parts = [
                    keras.layers.Dense(
                        5,
                        kernel_initializer=init(1),
                        activity_regularizer=first,
                    ),
                    keras.layers.Dense(
                        UNITS,
                        kernel_initializer=init(2),
                        activity_regularizer=second,
                    ),
                ]
            else:
                parts = [
                    keras.layers.Dense(5, kernel_initializer=init(1)),
                    layers.EmbeddingRegularization(first),
                    keras.layers.Dense(UNITS, kernel_initializer=init(2)),
                    layers.EmbeddingRegularization(second),
                ]
            return keras.Sequential([keras.Input((FEATURES,)), *parts])

        with mirrored().scope():
            model = build_two()
            model.compile(
                optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse"
            )
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        weights = [
            tf.Variable(np.asarray(w)) for w in build_two().trainable_weights
        ]
        with tf.GradientTape() as tape:
            hidden = tf.matmul(x, weights[0]) + weights[1]
            out = tf.matmul(hidden, weights[2]) + weights[3]
            loss = tf.reduce_mean(tf.square(out - y))
            loss += first.penalty(hidden) + second.penalty(out)
        grads = tape.gradient(loss, weights)
        for got, weight, grad in zip(
            model.trainable_weights, weights, grads, strict=True
        ):
            expected = weight.numpy() - LEARNING_RATE * grad.numpy()
            self.assertAllClose(got, expected, atol=1e-5, rtol=1e-5)
