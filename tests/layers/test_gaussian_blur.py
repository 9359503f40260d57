import numpy as np
import tensorflow as tf

from keras_featreg.layers.gaussian_blur import GaussianBlur
from tests import helpers as testing


def random_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("uint8")


def numpy_blur(image, sigma, radius):
    """2-D Gaussian convolution with mirrored (symmetric) edges."""
    t = np.arange(-radius, radius + 1)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    kernel = np.outer(k, k)
    padded = np.pad(
        image.astype(np.float64),
        [(radius, radius), (radius, radius), (0, 0)],
        mode="symmetric",
    )
    out = np.zeros(image.shape)
    size = 2 * radius + 1
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            window = padded[i : i + size, j : j + size]
            out[i, j] = np.einsum("ab,abc->c", kernel, window)
    return out


class GaussianBlurTest(testing.TestCase):
    def test_matches_numpy(self):
        images = random_images((3, 13, 14, 2))
        layer = GaussianBlur((0.1, 2.0), seed=0)
        sigma = layer.get_random_transformation(tf.constant(images))
        outputs = layer.transform_images(images, sigma)
        self.assertTrue(np.all((sigma >= 0.1) & (sigma <= 2.0)))
        for image, output, s in zip(
            images, outputs, np.asarray(sigma), strict=True
        ):
            self.assertAllClose(output, numpy_blur(image, s, 6), atol=1e-3)

    def test_radius_capped_by_small_images(self):
        images = random_images((2, 4, 5, 1))
        layer = GaussianBlur((1.5, 2.0), seed=0)
        sigma = layer.get_random_transformation(tf.constant(images))
        outputs = layer.transform_images(images, sigma)
        for image, output, s in zip(
            images, outputs, np.asarray(sigma), strict=True
        ):
            self.assertAllClose(output, numpy_blur(image, s, 4), atol=1e-3)

    def test_random_per_image_shapes_and_range(self):
        images = np.repeat(random_images((1, 16, 16, 3)), 4, axis=0)
        layer = GaussianBlur(seed=1)
        outputs = np.asarray(layer(images))
        self.assertNotAllClose(outputs[0], outputs[1])
        self.assertTrue(np.all((outputs >= 0) & (outputs <= 255)))
        self.assertEqual(layer(images[0]).shape, (16, 16, 3))
        self.assertAllClose(layer(images, training=False), images)
        self.assertEqual(layer(np.zeros((0, 8, 8, 3))).shape, (0, 8, 8, 3))
        constant = np.full((2, 9, 9, 3), 1e30, "float32")
        self.assertAllClose(layer(constant), constant, rtol=1e-5)

    def test_layer_checks(self):
        # Symbolic calls, output shapes, mixed precision, serialization.
        self.run_layer_test(
            GaussianBlur,
            init_kwargs={"seed": 1},
            input_shape=(2, 8, 9, 3),
            expected_output_shape=(2, 8, 9, 3),
            supports_masking=False,
            run_training_check=False,
        )
