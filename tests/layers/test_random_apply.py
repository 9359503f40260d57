import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.layers.color_jitter import ColorJitter
from keras_featreg.layers.random_apply import RandomApply
from keras_featreg.layers.random_resized_crop import RandomResizedCrop
from keras_featreg.layers.solarize import Solarize
from tests import helpers as testing


def random_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("uint8")


def numpy_solarize(images):
    images = images.astype(np.float64)
    return np.where(images >= 128, 255 - images, images)


def applied_mask(images, outputs):
    """Per image: True if solarized, False if unchanged (asserts one holds)."""
    mask = []
    for image, output in zip(images, np.asarray(outputs), strict=True):
        unchanged = np.array_equal(output, image.astype(np.float32))
        solarized = np.allclose(output, numpy_solarize(image))
        assert unchanged or solarized, "neither input nor layer(input)"
        mask.append(not unchanged)
    return np.array(mask)


class RandomApplyTest(testing.TestCase):
    def test_applies_per_image(self):
        images = random_images((64, 4, 4, 3))
        layer = RandomApply(Solarize(), rate=0.5, seed=0)
        outputs = layer(images)
        self.assertEqual(outputs.shape, images.shape)
        self.assertEqual(outputs.dtype, "float32")
        mask = applied_mask(images, outputs)
        self.assertTrue(mask.any() and not mask.all())

    @parameterized.parameters(0.1, 0.5, 0.8)
    def test_rate_is_the_probability(self, rate):
        images = np.full((4000, 1, 1, 1), 200, "uint8")  # solarize: 55
        outputs = np.asarray(RandomApply(Solarize(), rate, seed=1)(images))
        fraction = np.mean(outputs == 55.0)
        # Binomial standard deviation <= 0.008 at n = 4000.
        self.assertAllClose(fraction, rate, atol=0.04)

    def test_rate_zero_and_one(self):
        images = random_images((5, 4, 4, 3))
        never = RandomApply(Solarize(), rate=0.0)(images)
        self.assertAllClose(never, images.astype("float32"), atol=0)
        always = RandomApply(Solarize(), rate=1.0)(images)
        self.assertAllClose(always, numpy_solarize(images), atol=0)

    def test_random_per_call_and_seeded(self):
        images = random_images((32, 4, 4, 3))
        layer = RandomApply(Solarize(), rate=0.5, seed=3)
        first = applied_mask(images, layer(images))
        second = applied_mask(images, layer(images))
        self.assertFalse(np.array_equal(first, second))
        other = RandomApply(Solarize(), rate=0.5, seed=3)
        self.assertAllEqual(first, applied_mask(images, other(images)))

    def test_wrapped_randomness_and_inference(self):
        images = np.repeat(random_images((1, 8, 8, 3)), 8, axis=0)
        layer = RandomApply(ColorJitter(seed=0), rate=1.0, seed=0)
        outputs = np.asarray(layer(images))
        self.assertNotAllClose(outputs[0], outputs[1])  # jitter per image
        self.assertAllClose(
            layer(images, training=False), images.astype("float32"), atol=0
        )

    def test_single_image(self):
        image = random_images((6, 6, 3))
        outputs = RandomApply(Solarize(), rate=1.0)(image)
        self.assertAllClose(outputs, numpy_solarize(image))
        outputs = RandomApply(Solarize(), rate=0.5, seed=0)(image)
        self.assertEqual(outputs.shape, (6, 6, 3))

    @parameterized.parameters(0.001, 0.5, 0.999)
    def test_tf_data(self, rate):
        images = random_images((6, 5, 5, 3))
        layer = RandomApply(Solarize(), rate=rate, seed=0)
        batched = (
            tf.data.Dataset.from_tensor_slices(images)
            .batch(4)
            .map(layer, num_parallel_calls=2)
        )
        outputs = np.concatenate([np.asarray(x) for x in batched])
        applied_mask(images, outputs)
        per_image = tf.data.Dataset.from_tensor_slices(images).map(
            layer, num_parallel_calls=2
        )
        outputs = np.stack([np.asarray(x) for x in per_image])
        applied_mask(images, outputs)

    @parameterized.named_parameters(
        ("keras_flip", keras.layers.RandomFlip("horizontal", seed=2)),
        ("keras_blur", keras.layers.RandomGaussianBlur(seed=2)),
        ("jitter", ColorJitter(seed=2)),
    )
    def test_wraps_other_layers(self, inner):
        images = random_images((9, 8, 8, 3))
        layer = RandomApply(inner, rate=0.3, seed=4)
        self.assertEqual(layer(images).shape, images.shape)
        batched = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
        self.assertEqual([x.shape[0] for x in batched], [3, 3, 3])

    @parameterized.named_parameters(
        ("solarize", Solarize(threshold=100, value_range=(0, 1))),
        ("keras_flip", keras.layers.RandomFlip("horizontal", seed=2)),
        ("jitter", ColorJitter(brightness=0.1, seed=5)),
    )
    def test_config(self, inner):
        layer = RandomApply(inner, rate=0.3, seed=9)
        revived = self.run_class_serialization_test(layer)
        self.assertEqual(
            revived.get_config()["layer"], keras.layers.serialize(inner)
        )
        self.assertIsInstance(revived.layer, type(inner))

    def test_layer_checks(self):
        self.run_layer_test(
            RandomApply,
            init_kwargs={"layer": ColorJitter(seed=2), "rate": 0.5, "seed": 1},
            input_shape=(2, 8, 9, 3),
            expected_output_shape=(2, 8, 9, 3),
            supports_masking=False,
            run_training_check=False,
        )

    def test_degenerate_inputs_are_finite(self):
        layer = RandomApply(ColorJitter(seed=0), rate=0.5, seed=0)
        for images in [
            np.zeros((4, 3, 3, 3), "float32"),
            np.full((4, 3, 3, 3), 255.0, "float16"),
            np.zeros((0, 3, 3, 3), "uint8"),
        ]:
            outputs = layer(images)
            self.assertEqual(outputs.shape, images.shape)
            self.assertTrue(np.all(np.isfinite(outputs)))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: rate=1.5"):
            RandomApply(Solarize(), rate=1.5)
        with self.assertRaisesRegex(ValueError, "Received: rate=-0.1"):
            RandomApply(Solarize(), rate=-0.1)
        with self.assertRaisesRegex(TypeError, "Received: layer='flip'"):
            RandomApply("flip")
        with self.assertRaisesRegex(ValueError, "keeps the image shape"):
            RandomApply(RandomResizedCrop(2, 2), rate=0.01)(
                random_images((2, 4, 4, 3))
            )
        with self.assertRaisesRegex(TypeError, "image tensors only"):
            RandomApply(Solarize())({"images": random_images((2, 4, 4, 3))})

    def test_fit_smoke(self):
        inputs = keras.Input((6, 6, 3))
        x = RandomApply(keras.layers.RandomFlip(seed=0), rate=0.5, seed=0)(
            inputs
        )
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(2)(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss="mse")
        images = random_images((8, 6, 6, 3)).astype("float32") / 255
        history = model.fit(
            images, np.zeros((8, 2)), batch_size=4, epochs=1, verbose=0
        )
        self.assertTrue(np.isfinite(history.history["loss"][0]))
