import colorsys

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.layers.color_jitter import ColorJitter
from tests import helpers as testing

LUMA = np.array([0.2989, 0.587, 0.114])


def random_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("uint8")


def numpy_jitter(image, factors, order):
    """torchvision's ColorJitter on one `[0, 1]` image, given its draws."""
    x = image.astype(np.float64)
    rgb = x.shape[-1] == 3
    for op in order:
        f = factors[op]
        if op == 0:
            x = np.clip(f * x, 0, 1)
        elif op == 1:
            gray = x @ LUMA if rgb else x[..., 0]
            x = np.clip(f * x + (1 - f) * gray.mean(), 0, 1)
        elif op == 2 and rgb:
            gray = (x @ LUMA)[..., None]
            x = np.clip(f * x + (1 - f) * gray, 0, 1)
        elif op == 3 and rgb:
            out = np.empty_like(x)
            for i in range(x.shape[0]):
                for j in range(x.shape[1]):
                    h, s, v = colorsys.rgb_to_hsv(*x[i, j])
                    out[i, j] = colorsys.hsv_to_rgb((h + f) % 1.0, s, v)
            x = out
    return x


class ColorJitterTest(testing.TestCase):
    @parameterized.parameters(3, 1)
    def test_matches_torchvision_formulas(self, channels):
        images = random_images((6, 4, 5, channels))
        layer = ColorJitter(0.4, 0.4, 0.2, 0.1, seed=0)
        transformation = layer.get_random_transformation(tf.constant(images))
        outputs = layer.transform_images(images, transformation)
        factors = np.asarray(transformation["factors"])
        orders = np.asarray(transformation["order"])
        self.assertTrue(np.all((factors[:, 0] >= 0.6) & (factors[:, 0] <= 1.4)))
        self.assertTrue(np.all((factors[:, 2] >= 0.8) & (factors[:, 2] <= 1.2)))
        self.assertTrue(np.all(np.abs(factors[:, 3]) <= 0.1))
        self.assertEqual(sorted(orders[0].tolist()), [0, 1, 2, 3])
        for image, output, f, order in zip(
            images, outputs, factors, orders, strict=True
        ):
            expected = 255 * numpy_jitter(image / 255, f, order)
            self.assertAllClose(output, expected, atol=2e-3)

    def test_value_range_and_zero_arguments(self):
        images = random_images((3, 4, 4, 3)).astype("float32") / 255
        layer = ColorJitter(0.5, 0.0, 0.0, 0.0, value_range=(0, 1), seed=1)
        transformation = layer.get_random_transformation(tf.constant(images))
        outputs = layer.transform_images(images, transformation)
        brightness = np.asarray(transformation["factors"])[:, 0]
        expected = np.clip(brightness[:, None, None, None] * images, 0, 1)
        self.assertAllClose(outputs, expected, atol=1e-6)

    def test_random_per_image_and_per_call(self):
        images = np.repeat(random_images((1, 6, 6, 3)), 4, axis=0)
        layer = ColorJitter(seed=0)
        first = np.asarray(layer(images))
        self.assertEqual(first.dtype, np.float32)
        self.assertTrue(np.all((first >= 0) & (first <= 255)))
        for i in range(1, 4):
            self.assertNotAllClose(first[0], first[i])
        self.assertNotAllClose(first, layer(images))
        self.assertAllClose(
            ColorJitter(seed=4)(images), ColorJitter(seed=4)(images)
        )
        self.assertAllClose(layer(images, training=False), images)

    def test_degenerate_inputs_are_finite(self):
        layer = ColorJitter(seed=0)
        for images in [
            np.zeros((2, 3, 3, 3), "uint8"),
            np.full((2, 3, 3, 3), 255, "uint8"),
            np.full((2, 3, 3, 1), 7, "float16"),
            np.zeros((0, 3, 3, 3), "float32"),
        ]:
            outputs = np.asarray(layer(images))
            self.assertEqual(outputs.shape, images.shape)
            self.assertTrue(np.all(np.isfinite(outputs)))

    def test_layer_checks(self):
        # Symbolic calls, output shapes, mixed precision, serialization.
        self.run_layer_test(
            ColorJitter,
            init_kwargs={"seed": 1},
            input_shape=(2, 8, 9, 3),
            expected_output_shape=(2, 8, 9, 3),
            supports_masking=False,
            run_training_check=False,
        )
