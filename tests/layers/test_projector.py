"""build_projector: VICReg's Dense-BN-ReLU blocks and a bias-free last Dense."""

import os

import keras
import numpy as np
from absl.testing import parameterized

from keras_featreg import layers
from tests import helpers as testing


class BuildProjectorTest(testing.TestCase):
    def test_structure(self):
        projector = layers.build_projector((16, 32, 8))
        kinds = [type(layer).__name__ for layer in projector.layers]
        self.assertEqual(
            kinds,
            [
                "Dense",
                "BatchNormalization",
                "ReLU",
                "Dense",
                "BatchNormalization",
                "ReLU",
                "Dense",
            ],
        )
        dense = projector.layers[0::3]
        self.assertEqual([layer.units for layer in dense], [16, 32, 8])
        self.assertEqual(
            [layer.use_bias for layer in dense], [True, True, False]
        )
        for layer in dense:  # the ReLU is its own layer, after the BN
            self.assertIs(layer.activation, keras.activations.linear)
        batch_norms = projector.layers[1::3]
        self.assertEqual(
            [layer.synchronized for layer in batch_norms], [False, False]
        )
        outputs = projector(np.ones((4, 5), "float32"))
        self.assertEqual(tuple(outputs.shape), (4, 8))
        # Two biased Dense + two BN (gamma, beta) + a bias-free kernel.
        self.assertLen(projector.trainable_weights, 2 + 2 + 2 + 2 + 1)

    def test_default_is_vicreg_imagenet(self):
        projector = layers.build_projector()
        self.assertEqual(
            [layer.units for layer in projector.layers[0::3]],
            [8192, 8192, 8192],
        )

    @parameterized.parameters(8, (8,), [8])
    def test_single_layer(self, widths):
        projector = layers.build_projector(widths)
        self.assertLen(projector.layers, 1)
        self.assertFalse(projector.layers[0].use_bias)
        self.assertEqual(projector.layers[0].units, 8)

    def test_synchronized(self):
        projector = layers.build_projector((8, 4), synchronized=True)
        self.assertTrue(projector.layers[1].synchronized)

    def test_batch_norm_uses_batch_statistics_in_training(self):
        projector = layers.build_projector((6, 3), name="proj")
        self.assertEqual(projector.name, "proj")
        x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
        dense, batch_norm = projector.layers[0], projector.layers[1]
        projector(x, training=True)
        pre = np.asarray(dense(x), np.float64)
        hidden = np.asarray(batch_norm(dense(x), training=True))
        # gamma = 1, beta = 0 at initialization: standardized columns.
        expected = (pre - pre.mean(axis=0)) / np.sqrt(
            pre.var(axis=0) + batch_norm.epsilon
        )
        self.assertAllClose(hidden, expected, atol=1e-5)

    @parameterized.named_parameters(
        ("empty", {"widths": []}, ValueError, "Received: widths=[]"),
        ("zero", {"widths": (8, 0)}, ValueError, "Received: widths=0"),
        ("float", {"widths": (8, 2.5)}, TypeError, "Received: widths=2.5"),
        (
            "synchronized",
            {"synchronized": "yes"},
            TypeError,
            "Received: synchronized='yes'",
        ),
    )
    def test_invalid_arguments(self, kwargs, error, message):
        with self.assertRaisesRegex(error, message.replace("[", r"\[")):
            layers.build_projector(**kwargs)

    def test_save_and_load(self):
        projector = layers.build_projector((8, 4))
        x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
        expected = projector(x)
        path = os.path.join(self.get_temp_dir(), "projector.keras")
        projector.save(path)
        restored = keras.saving.load_model(path)
        self.assertAllClose(restored(x), expected)

    def test_fit_smoke(self):
        keras.utils.set_random_seed(0)  # seeds 0-19 all pass
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 5)).astype("float32")
        y = x @ rng.normal(size=(5, 3)).astype("float32")
        model = keras.Sequential(
            [keras.Input((5,)), layers.build_projector((16, 3))]
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
        self.assertLess(history.history["loss"][-1], history.history["loss"][0])


class ProjectorBatchNormDefaultsTest(testing.TestCase):
    def test_batch_norm_defaults_follow_the_reference(self):
        # PyTorch BatchNorm1d: momentum 0.1 (Keras 0.9), eps 1e-5.
        projector = layers.build_projector((8, 8, 4))
        for batch_norm in projector.layers[1::3]:
            self.assertAllClose(batch_norm.momentum, 0.9)
            self.assertAllClose(batch_norm.epsilon, 1e-5)

    def test_keras_defaults_remain_reachable(self):
        projector = layers.build_projector((8, 4), momentum=0.99, epsilon=1e-3)
        self.assertAllClose(projector.layers[1].momentum, 0.99)
        self.assertAllClose(projector.layers[1].epsilon, 1e-3)

    def test_moving_mean_update_matches_pytorch_rule(self):
        projector = layers.build_projector((6, 3))
        x = np.random.default_rng(2).normal(size=(10, 4)).astype("float32")
        projector(x, training=True)
        dense, batch_norm = projector.layers[0], projector.layers[1]
        batch_mean = np.asarray(dense(x), np.float64).mean(axis=0)
        # PyTorch: running = (1 - 0.1) * running + 0.1 * batch, from 0.
        self.assertAllClose(batch_norm.moving_mean, 0.1 * batch_mean, atol=1e-6)

    @parameterized.named_parameters(
        ("momentum", {"momentum": 1.5}, ValueError, "Received: momentum=1.5"),
        ("epsilon", {"epsilon": 0.0}, ValueError, "Received: epsilon=0.0"),
        ("type", {"momentum": "a"}, TypeError, "Received: momentum='a'"),
    )
    def test_invalid_batch_norm_arguments(self, kwargs, error, message):
        with self.assertRaisesRegex(error, message):
            layers.build_projector((8, 4), **kwargs)
