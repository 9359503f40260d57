import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import layers
from keras_featreg import regularizers
from keras_featreg.distribute import get_strategy
from tests import helpers as testing
from tests.regularizers.test_svmax import numpy_l2_normalize
from tests.regularizers.test_svmax import numpy_mean_singular_value
from tests.regularizers.test_svmax import numpy_svmax
from tests.regularizers.test_vicreg import numpy_vicreg


def numpy_pool(x, pooling):
    """Global pooling over the spatial axes (all but first and last)."""
    x = np.asarray(x, dtype=np.float64)
    if pooling is None or x.ndim == 2:
        return x.reshape(len(x), -1)
    axes = tuple(range(1, x.ndim - 1))
    return x.mean(axis=axes) if pooling == "avg" else x.max(axis=axes)


class EmbeddingRegularizationTest(testing.TestCase):
    @parameterized.named_parameters(
        ("svmax", regularizers.SVMaxRegularizer(0.3, bounded=False), None),
        ("vicreg_avg", regularizers.VICRegRegularizer(gamma=0.5), "avg"),
        ("keras_string", "l2", "max"),
        ("keras_instance", keras.regularizers.L1(0.2), None),
        (
            "config_dict",
            keras.regularizers.serialize(regularizers.SVMaxRegularizer(2.0)),
            None,
        ),
    )
    def test_config(self, regularizer, pooling):
        layer = layers.EmbeddingRegularization(regularizer, pooling=pooling)
        revived = self.run_class_serialization_test(layer)
        self.assertEqual(revived.pooling, pooling)
        self.assertEqual(
            revived.regularizer.get_config(), layer.regularizer.get_config()
        )

    @parameterized.parameters(1, 3, 17)
    def test_adds_the_svmax_penalty_unscaled(self, batch_size):
        x = np.random.default_rng(batch_size).normal(size=(batch_size, 6))
        x = x.astype("float32")
        layer = layers.EmbeddingRegularization(
            regularizers.SVMaxRegularizer(factor=0.5)
        )
        outputs = layer(x)
        self.assertAllClose(outputs, x, atol=0, rtol=0)
        self.assertLen(layer.losses, 1)
        self.assertAllClose(layer.losses[0], numpy_svmax(x, 0.5), rtol=1e-5)

    def test_adds_the_vicreg_penalty_unscaled(self):
        x = np.random.default_rng(0).normal(size=(9, 4)).astype("float32")
        layer = layers.EmbeddingRegularization(
            regularizers.VICRegRegularizer(3.0, 0.5)
        )
        layer(x)
        self.assertAllClose(
            layer.losses[0], numpy_vicreg(x, 3.0, 0.5), rtol=1e-5
        )

    def test_keras_regularizer_is_not_divided(self):
        x = np.random.default_rng(1).normal(size=(7, 4)).astype("float32")
        layer = layers.EmbeddingRegularization("l2")  # L2(0.01)
        layer(x)
        expected = 0.01 * np.sum(x.astype("float64") ** 2)
        self.assertAllClose(layer.losses[0], expected, rtol=1e-5)
        layer = layers.EmbeddingRegularization(keras.regularizers.L1(0.1))
        layer(x)
        expected = 0.1 * np.sum(np.abs(x.astype("float64")))
        self.assertAllClose(layer.losses[0], expected, rtol=1e-5)

    @parameterized.product(pooling=(None, "avg", "max"), rank=(3, 4))
    def test_pooling_of_feature_maps(self, pooling, rank):
        shape = (6, 3, 4) if rank == 3 else (6, 2, 3, 4)
        x = np.random.default_rng(2).normal(size=shape).astype("float32")
        regularizer = regularizers.SVMaxRegularizer(factor=1.0)
        layer = layers.EmbeddingRegularization(regularizer, pooling=pooling)
        outputs = layer(x, training=True)
        self.assertAllClose(outputs, x, atol=0, rtol=0)
        features = numpy_pool(x, pooling)
        self.assertAllClose(layer.losses[0], numpy_svmax(features), rtol=1e-5)
        self.assertAllClose(
            layer.last_mean_singular_value,
            numpy_mean_singular_value(numpy_l2_normalize(features)),
            rtol=1e-5,
        )

    @parameterized.named_parameters(
        ("svmax", regularizers.SVMaxRegularizer(0.5)),
        ("svmax_raw", regularizers.SVMaxRegularizer(0.5, normalize=False)),
        ("vicreg", regularizers.VICRegRegularizer()),
        ("keras_l2", keras.regularizers.L2(0.1)),
    )
    def test_last_values(self, regularizer):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(10, 4)).astype("float32")
        layer = layers.EmbeddingRegularization(regularizer)
        self.assertEqual(layer.last_penalty.dtype, "float32")
        self.assertFalse(layer.last_penalty.trainable)
        # Written per replica, with no synchronization in the forward pass.
        self.assertEqual(layer.last_penalty.aggregation, "mean")
        self.assertEqual(layer.last_penalty.synchronization, "on_read")
        self.assertLen(layer.trainable_weights, 0)
        layer(x, training=True)
        self.assertAllClose(layer.last_penalty, layer.losses[0], atol=0)
        s_mu = numpy_mean_singular_value(numpy_l2_normalize(x))
        self.assertAllClose(layer.last_mean_singular_value, s_mu, rtol=1e-5)
        # Inference adds the loss but keeps the last training values.
        other = rng.normal(size=(5, 4)).astype("float32")
        layer(other, training=False)
        layer(other)
        self.assertAllClose(layer.last_mean_singular_value, s_mu, rtol=1e-5)
        self.assertNotAllClose(layer.last_penalty, layer.losses[0])

    def test_mixed_precision_passes_dtypes_through(self):
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_float16")
        self.addCleanup(keras.mixed_precision.set_global_policy, previous)
        rng = np.random.default_rng(4)
        layer = layers.EmbeddingRegularization(
            regularizers.SVMaxRegularizer(), pooling="avg"
        )
        x32 = rng.normal(size=(8, 2, 2, 3)).astype("float32")
        self.assertEqual(layer(x32).dtype, tf.float32)  # no autocast
        x16 = tf.constant(x32, dtype="float16")
        self.assertEqual(layer(x16, training=True).dtype, tf.float16)
        self.assertEqual(layer.losses[0].dtype, tf.float32)
        features = numpy_pool(tf.cast(x16, "float64").numpy(), "avg")
        self.assertAllClose(layer.losses[0], numpy_svmax(features), rtol=1e-3)
        self.assertEqual(layer.last_penalty.dtype, "float32")
        self.assertAllClose(layer.last_penalty, layer.losses[0], atol=0)
        symbolic = layer(keras.Input((3,), dtype="float32"))
        self.assertEqual(symbolic.dtype, "float32")

    @parameterized.named_parameters(
        ("all_zero", np.zeros((6, 4))),
        ("collapsed", np.ones((6, 4))),
        ("one_row", np.ones((1, 4))),
        ("fewer_rows_than_dims", np.arange(8.0).reshape(2, 4)),
    )
    def test_degenerate_batches_are_finite(self, x):
        x = tf.Variable(x.astype("float32"))
        layer = layers.EmbeddingRegularization(regularizers.SVMaxRegularizer())
        with tf.GradientTape() as tape:
            layer(x, training=True)
            loss = layer.losses[0]
        gradient = tape.gradient(loss, x)
        self.assertTrue(np.isfinite(loss.numpy()))
        self.assertTrue(np.all(np.isfinite(gradient.numpy())))
        self.assertTrue(np.isfinite(layer.last_mean_singular_value.numpy()))

    def test_fit_with_mirrored_strategy(self):
        strategy = get_strategy("mirrored", ["CPU:0", "CPU:1"])
        with strategy.scope():
            inputs = keras.Input((6,))
            embeddings = keras.layers.Dense(4)(inputs)
            outputs = layers.EmbeddingRegularization(
                regularizers.SVMaxRegularizer(0.5)
            )(embeddings)
            model = keras.Model(inputs, outputs)
            model.compile(optimizer="sgd", loss="mse")
        rng = np.random.default_rng(5)
        x = rng.normal(size=(32, 6)).astype("float32")
        y = rng.normal(size=(32, 4)).astype("float32")
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        layer = model.layers[-1]
        # Bounded SVMax on unit rows lies in [factor, e * factor].
        self.assertBetween(float(layer.last_penalty.numpy()), 0.5, 0.5 * np.e)
        self.assertGreater(float(layer.last_mean_singular_value.numpy()), 0)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: pooling='mean'"):
            layers.EmbeddingRegularization("l2", pooling="mean")
        with self.assertRaisesRegex(ValueError, "Received: regularizer=None"):
            layers.EmbeddingRegularization(None)
        config = keras.regularizers.serialize(regularizers.SVMaxRegularizer())
        config["config"]["factor"] = -2
        with self.assertRaisesRegex(ValueError, "Received: factor=-2"):
            layers.EmbeddingRegularization(config)
