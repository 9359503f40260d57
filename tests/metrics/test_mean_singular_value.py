import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import metrics
from tests import helpers as testing
from tests.regularizers.test_svmax import numpy_l2_normalize
from tests.regularizers.test_svmax import numpy_mean_singular_value


class MeanSingularValueTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(metrics.MeanSingularValue())
        revived = self.run_class_serialization_test(
            metrics.MeanSingularValue(normalize=False, name="s_mu")
        )
        self.assertFalse(revived.normalize)
        self.assertEqual(revived.name, "s_mu")

    @parameterized.parameters(True, False)
    def test_correctness_over_batches(self, normalize):
        rng = np.random.default_rng(seed=0)
        batches = [
            rng.normal(size=(8, 4)),
            rng.normal(size=(3, 4)),  # b < d
            rng.normal(size=(5, 2, 2)),  # flattened to (5, 4)
        ]
        metric = metrics.MeanSingularValue(normalize=normalize)
        expected = []
        for batch in batches:
            metric.update_state(None, batch.astype("float32"))
            rows = batch.reshape(len(batch), -1)
            if normalize:
                rows = numpy_l2_normalize(rows)
            expected.append(numpy_mean_singular_value(rows))
        self.assertAllClose(metric.result(), np.mean(expected), rtol=1e-5)
        metric.reset_state()
        self.assertAllClose(metric.result(), 0.0)

    def test_ignores_labels_and_sample_weight(self):
        y_pred = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
        plain = metrics.MeanSingularValue()
        plain.update_state(None, y_pred)
        weighted = metrics.MeanSingularValue()
        weighted.update_state(np.arange(6), y_pred, sample_weight=np.ones(6))
        self.assertAllClose(weighted.result(), plain.result())

    @parameterized.named_parameters(
        ("all_zero", np.zeros((4, 3))),
        ("collapsed", np.ones((4, 3))),
        ("one_row", np.ones((1, 3))),
    )
    def test_degenerate_batches_are_finite(self, y_pred):
        metric = metrics.MeanSingularValue()
        metric.update_state(None, y_pred.astype("float32"))
        expected = numpy_mean_singular_value(numpy_l2_normalize(y_pred))
        self.assertAllClose(metric.result(), expected, rtol=1e-5, atol=1e-7)

    def test_half_precision_input(self):
        y_pred = tf.constant(
            np.random.default_rng(2).normal(size=(6, 3)), dtype="float16"
        )
        metric = metrics.MeanSingularValue()
        metric.update_state(None, y_pred)
        self.assertEqual(metric.result().dtype, "float32")
        expected = numpy_mean_singular_value(
            numpy_l2_normalize(tf.cast(y_pred, "float64").numpy())
        )
        self.assertAllClose(metric.result(), expected, rtol=1e-4)

    def test_compile_fit_and_evaluate(self):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        model.compile(
            optimizer="sgd", loss="mse", metrics=[metrics.MeanSingularValue()]
        )
        rng = np.random.default_rng(3)
        x = rng.normal(size=(24, 5)).astype("float32")
        y = rng.normal(size=(24, 3)).astype("float32")
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["mean_singular_value"][0]))
        result = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
        predictions = model.predict(x, verbose=0)
        expected = np.mean(
            [
                numpy_mean_singular_value(numpy_l2_normalize(batch))
                for batch in np.split(predictions, 3)
            ]
        )
        self.assertAllClose(result["mean_singular_value"], expected, rtol=1e-5)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(TypeError, "Received: normalize='no'"):
            metrics.MeanSingularValue(normalize="no")
