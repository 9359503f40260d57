import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing
from tests.losses.common import fit_smoke


def numpy_cosine(u, v):
    """u.v / (|u| |v|) at any scale; 0 when either vector is zero."""
    u, v = np.float64(u), np.float64(v)
    norms = np.linalg.norm(u) * np.linalg.norm(v)
    return float(u @ v / norms) if norms > 0 else 0.0


def numpy_proxy_anchor(labels, x, proxies, margin=0.1, alpha=32.0):
    """Kim et al. Eq. 4, looping over proxies and samples."""
    num_classes = len(proxies)
    pos_terms, neg_terms = [], []
    for c in range(num_classes):
        members = [i for i in range(len(labels)) if labels[i] == c]
        others = [i for i in range(len(labels)) if labels[i] != c]
        if members:
            total = sum(
                math.exp(-alpha * (numpy_cosine(x[i], proxies[c]) - margin))
                for i in members
            )
            pos_terms.append(math.log(1 + total))
        total = sum(
            math.exp(alpha * (numpy_cosine(x[i], proxies[c]) + margin))
            for i in others
        )
        neg_terms.append(math.log(1 + total))
    pos = sum(pos_terms) / len(pos_terms) if pos_terms else 0.0
    return pos + sum(neg_terms) / num_classes


class ProxyAnchorLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.ProxyAnchorLoss())
        revived = self.run_class_serialization_test(
            losses.ProxyAnchorLoss(margin=0.2, alpha=16.0)
        )
        self.assertEqual((revived.margin, revived.alpha), (0.2, 16.0))

    def test_layer_config(self):
        layer = losses.ProxyAnchor(num_classes=5, name="head")
        revived = self.run_class_serialization_test(layer)
        self.assertEqual(revived.num_classes, 5)
        initializer = revived.proxy_initializer.get_config()
        self.assertEqual(initializer["scale"], 2.0)
        self.assertEqual(initializer["distribution"], "untruncated_normal")

    @parameterized.product(
        labels=[[0, 0, 1, 1, 2, 2], [3, 1, 3, 3, 1], [0, 1, 2, 3, 4, 0]],
        hyper=[(0.1, 32.0), (0.5, 4.0)],
    )
    def test_correctness(self, labels, hyper):
        margin, alpha = hyper
        labels = np.array(labels)
        rng = np.random.default_rng(1)
        x = rng.normal(size=(len(labels), 3)).astype("float32")
        proxies = rng.normal(size=(6, 3)).astype("float32")
        expected = numpy_proxy_anchor(labels, x, proxies, margin, alpha)
        value = losses.proxy_anchor_loss(labels, x, proxies, margin, alpha)
        self.assertAllClose(value, np.full(len(labels), expected), rtol=1e-5)
        layer = losses.ProxyAnchor(6)
        layer.build((None, 3))
        layer.proxies.assign(proxies)
        loss = losses.ProxyAnchorLoss(margin, alpha)
        self.assertAllClose(loss(labels, layer(x)), expected, rtol=1e-5)

    def test_proxy_initialization(self):
        layer = losses.ProxyAnchor(num_classes=200)
        layer.build((None, 64))
        proxies = layer.proxies.numpy()
        self.assertEqual(proxies.shape, (200, 64))
        # Kaiming normal, fan_out of the (classes, dim) matrix: std
        # sqrt(2 / num_classes), untruncated (|z| > 2 std occurs).
        self.assertAllClose(np.std(proxies), math.sqrt(2 / 200), rtol=0.05)
        self.assertGreater(np.max(np.abs(proxies)), 2 * math.sqrt(2 / 200))

    def test_layer_output(self):
        layer = losses.ProxyAnchor(num_classes=3)
        x = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], "float32")
        similarities = layer(x)
        proxies = layer.proxies.numpy()
        self.assertEqual(tuple(similarities.shape), (3, 3))
        self.assertEqual(layer.compute_output_shape((None, 2)), (None, 3))
        for i in range(2):
            for c in range(3):
                self.assertAllClose(
                    similarities[i, c], numpy_cosine(x[i], proxies[c])
                )
        self.assertAllClose(similarities[2], np.zeros(3))  # zero row

    def test_layer_mixed_precision(self):
        layer = losses.ProxyAnchor(num_classes=3, dtype="mixed_float16")
        x = np.random.default_rng(0).normal(size=(4, 5)).astype("float16")
        similarities = layer(x)
        self.assertEqual(similarities.dtype, tf.float32)
        self.assertEqual(layer.proxies.dtype, "float32")

    def test_labels_out_of_range(self):
        similarities = np.zeros((3, 4), "float32")
        with self.assertRaisesRegex(ValueError, "Received: labels=4"):
            losses.ProxyAnchorLoss()(np.array([0, 1, 4]), similarities)
        with self.assertRaisesRegex(ValueError, "Received: labels=-1"):
            losses.proxy_anchor_loss_from_similarities(
                np.array([0, -1, 2]), similarities
            )

    def test_degenerate_batches(self):
        rng = np.random.default_rng(2)
        proxies = rng.normal(size=(4, 3)).astype("float32")
        for labels, x in [
            (np.zeros(4, int), rng.normal(size=(4, 3))),  # one class
            (np.arange(4), rng.normal(size=(4, 3))),  # singletons
            (np.array([1]), rng.normal(size=(1, 3))),  # one sample
            (np.array([0, 1, 1]), np.zeros((3, 3))),  # all-zero rows
            (np.array([0, 0, 1]), np.ones((3, 3))),  # duplicate rows
            (np.array([0, 0, 1]), 1e-30 * np.ones((3, 3))),  # tiny
            (np.array([0, 0, 1]), 1e30 * rng.normal(size=(3, 3))),  # huge
        ]:
            x = tf.Variable(x.astype("float32"))
            p = tf.Variable(proxies)
            with tf.GradientTape() as tape:
                value = tf.reduce_mean(losses.proxy_anchor_loss(labels, x, p))
            grad_x, grad_p = tape.gradient(value, [x, p])
            expected = numpy_proxy_anchor(labels, x.numpy(), proxies)
            self.assertAllClose(value, expected, rtol=1e-4)
            self.assertTrue(np.isfinite(value.numpy()))
            self.assertTrue(np.all(np.isfinite(grad_x.numpy())))
            self.assertTrue(np.all(np.isfinite(grad_p.numpy())))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: margin=-1"):
            losses.ProxyAnchorLoss(margin=-1)
        with self.assertRaisesRegex(ValueError, "Received: alpha=0"):
            losses.ProxyAnchorLoss(alpha=0)
        with self.assertRaisesRegex(ValueError, "Received: num_classes=0"):
            losses.ProxyAnchor(num_classes=0)
        with self.assertRaisesRegex(TypeError, "Received: num_classes=2.5"):
            losses.ProxyAnchor(num_classes=2.5)
        with self.assertRaisesRegex(ValueError, "Received: input_shape"):
            losses.ProxyAnchor(num_classes=2).build((None, None))

    def test_fit_trains_proxies(self):
        # Seeded: unseeded proxies and Dense weights made the loss rise in
        # 3 epochs once (39.11 after 38.48) when a suite run drew them
        # badly; seeds 0-19 all fall by 5-21.
        keras.utils.set_random_seed(0)
        head = losses.ProxyAnchor(num_classes=8)
        head.build((None, 4))
        before = head.proxies.numpy().copy()
        model, history = fit_smoke(self, losses.ProxyAnchorLoss(), head=head)
        self.assertTrue(
            any(v is head.proxies for v in model.trainable_variables)
        )
        self.assertNotAllClose(head.proxies.numpy(), before)
        self.assertLess(history[-1], history[0])

    def test_saved_model_keeps_proxies(self):
        head = losses.ProxyAnchor(num_classes=3)
        model = keras.Sequential([keras.Input((4,)), head])
        model.compile(optimizer="sgd", loss=losses.ProxyAnchorLoss())
        path = self.get_temp_dir() + "/model.keras"
        model.save(path)
        revived = keras.models.load_model(path)
        self.assertAllClose(revived.layers[-1].proxies, head.proxies)
        self.assertIsInstance(revived.loss, losses.ProxyAnchorLoss)
