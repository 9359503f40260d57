import colorsys

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from keras.src import testing

from keras_featreg.data import augmentations
from keras_featreg.data.augmentations import ColorJitter
from keras_featreg.data.augmentations import GaussianBlur
from keras_featreg.data.augmentations import Solarize
from keras_featreg.data.augmentations import two_view_dataset
from keras_featreg.data.augmentations import vicreg_augmenter
from keras_featreg.layers.random_apply import RandomApply

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


class SolarizeTest(testing.TestCase):
    @parameterized.parameters(((0, 255),), ((0, 1),), ((-1, 1),))
    def test_matches_pil_rule(self, value_range):
        low, high = value_range
        pixels = random_images((2, 5, 5, 3)).astype(np.float64)
        images = low + pixels / 255 * (high - low)
        outputs = Solarize(value_range=value_range)(images.astype("float32"))
        expected = (
            low
            + (high - low) * np.where(pixels >= 128, 255 - pixels, pixels) / 255
        )
        self.assertAllClose(outputs, expected, atol=1e-5)


class LayerChecksTest(testing.TestCase):
    @parameterized.parameters(
        (ColorJitter, {"seed": 1}),
        (GaussianBlur, {"seed": 1}),
        (Solarize, {}),
    )
    def test_layer_checks(self, cls, kwargs):
        # Symbolic calls, output shapes, mixed precision, serialization.
        self.run_layer_test(
            cls,
            init_kwargs=kwargs,
            input_shape=(2, 8, 9, 3),
            expected_output_shape=(2, 8, 9, 3),
            supports_masking=False,
            run_training_check=False,
        )


class VICRegAugmenterTest(testing.TestCase):
    @parameterized.parameters((1, 1.0, 0.0), (2, 0.1, 0.2))
    def test_view_rates(self, view, blur, solarize):
        augment = vicreg_augmenter(32, view=view, seed=0)
        rates = [
            (type(layer.layer).__name__, layer.rate)
            for layer in augment.layers
            if isinstance(layer, RandomApply)
        ]
        self.assertEqual(
            rates,
            [
                ("ColorJitter", 0.8),
                ("GaussianBlur", blur),
                ("Solarize", solarize),
            ],
        )
        names = [type(layer).__name__ for layer in augment.layers]
        self.assertEqual(names[:2], ["RandomResizedCrop", "RandomFlip"])
        self.assertIn("RandomGrayscale", names)

    @parameterized.parameters((28, 1, 28), (20, 3, (16, 12)))
    def test_shapes_and_normalization(self, size, channels, image_size):
        images = random_images((4, size, size, channels))
        augment = vicreg_augmenter(
            image_size, view=2, channels=channels, normalization="none"
        )
        outputs = np.asarray(augment(images))
        height, width = (
            image_size if isinstance(image_size, tuple) else (size, size)
        )
        self.assertEqual(outputs.shape, (4, height, width, channels))
        self.assertEqual(outputs.dtype, np.float32)
        self.assertTrue(np.all((outputs >= 0) & (outputs <= 255)))
        self.assertEqual(augment(images[0]).shape, (height, width, channels))

    @parameterized.parameters((3, "torch"), (1, "torch"), (3, "tf"))
    def test_normalization_layer(self, channels, normalization):
        images = random_images((2, 3, 3, channels)).astype("float32")
        layer = augmentations._normalization_layer(
            normalization, channels, (0, 255)
        )
        if normalization == "tf":
            expected = images / 127.5 - 1
        elif channels == 3:
            mean = np.array([0.485, 0.456, 0.406])
            std = np.array([0.229, 0.224, 0.225])
            expected = (images / 255 - mean) / std
        else:
            mean = LUMA @ np.array([0.485, 0.456, 0.406])
            std = LUMA @ np.array([0.229, 0.224, 0.225])
            expected = (images / 255 - mean) / std
        self.assertAllClose(layer(images), expected, atol=1e-5)

    def test_seeds(self):
        images = random_images((4, 16, 16, 3))
        a = vicreg_augmenter(16, view=1, seed=3)(images)
        b = vicreg_augmenter(16, view=1, seed=3)(images)
        c = vicreg_augmenter(16, view=2, seed=3)(images)
        self.assertAllClose(a, b)
        self.assertNotAllClose(a, c)
        seeds = [
            layer.seed for layer in vicreg_augmenter(16, seed=3).layers[:3]
        ]
        self.assertLen(set(seeds), 3)

    def test_config(self):
        augment = vicreg_augmenter(16, view=2, channels=1, seed=0)
        config = keras.saving.serialize_keras_object(augment)
        revived = keras.saving.deserialize_keras_object(config)
        self.assertEqual(
            [type(layer).__name__ for layer in revived.layers],
            [type(layer).__name__ for layer in augment.layers],
        )
        images = random_images((2, 16, 16, 1))
        self.assertAllClose(augment(images), revived(images))
        for layer in [
            ColorJitter(0.1, 0.2, 0.3, 0.4, (0, 1), seed=1),
            GaussianBlur((0.5, 1.0), seed=2),
            Solarize(100, (-1, 1)),
        ]:
            self.run_class_serialization_test(layer)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: view=3"):
            vicreg_augmenter(32, view=3)
        with self.assertRaisesRegex(ValueError, "Received: channels=2"):
            vicreg_augmenter(32, channels=2)
        with self.assertRaisesRegex(
            ValueError, "Received: normalization='caffe'"
        ):
            vicreg_augmenter(32, normalization="caffe")
        with self.assertRaisesRegex(ValueError, "Received: image_size=0"):
            vicreg_augmenter(0)
        with self.assertRaisesRegex(ValueError, "Received: blur_rate=2.0"):
            vicreg_augmenter(32, blur_rate=2.0)
        with self.assertRaisesRegex(ValueError, "Received: brightness=-1.0"):
            ColorJitter(brightness=-1.0)
        with self.assertRaisesRegex(ValueError, "Received: hue=0.6"):
            ColorJitter(hue=0.6)
        with self.assertRaisesRegex(
            ValueError, r"Received: sigma_range=\(2, 1\)"
        ):
            GaussianBlur(sigma_range=(2, 1))
        with self.assertRaisesRegex(ValueError, "Received: threshold=300"):
            Solarize(threshold=300)
        with self.assertRaisesRegex(
            ValueError, r"Received: value_range=\(1, 1\)"
        ):
            Solarize(value_range=(1, 1))


class TwoViewDatasetTest(testing.TestCase):
    def test_digits_pairs_and_fit(self):
        images = random_images((10, 8, 8))
        dataset = two_view_dataset(images, batch_size=4, image_size=8, seed=0)
        batches = list(dataset)
        self.assertLen(batches, 2)  # drop_remainder
        for view_a, view_b in batches:
            self.assertEqual(view_a.shape, (4, 8, 8, 1))
            self.assertEqual(view_b.shape, (4, 8, 8, 1))
            self.assertEqual(view_a.dtype, tf.float32)
            self.assertNotAllClose(view_a, view_b)
            self.assertTrue(np.all(np.isfinite(view_a)))
        # Smoke test: regress view b from view a.
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(64),
            ]
        )
        model.compile(optimizer="sgd", loss="mse")
        pairs = dataset.map(lambda a, b: (a, tf.reshape(b, (-1, 64))))
        history = model.fit(pairs, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_rgb_and_options(self):
        images = random_images((5, 12, 12, 3))
        dataset = two_view_dataset(
            images,
            batch_size=2,
            image_size=8,
            shuffle=False,
            drop_remainder=False,
            normalization="none",
        )
        shapes = [tuple(a.shape) for a, _ in dataset]
        self.assertEqual(shapes, [(2, 8, 8, 3), (2, 8, 8, 3), (1, 8, 8, 3)])

    def test_images_of_varying_sizes(self):
        def varying_sizes():
            for size in (10, 14, 20):
                yield random_images((size, 30 - size, 3), seed=size)

        images = tf.data.Dataset.from_generator(
            varying_sizes,
            output_signature=tf.TensorSpec((None, None, 3), tf.uint8),
        )
        dataset = two_view_dataset(images, batch_size=3, image_size=8, seed=1)
        (view_a, view_b), *rest = list(dataset)
        self.assertEqual(rest, [])
        self.assertEqual(view_a.shape, (3, 8, 8, 3))
        self.assertNotAllClose(view_a, view_b)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: batch_size=0"):
            two_view_dataset(random_images((4, 8, 8)), 0, 8)
        with self.assertRaisesRegex(
            ValueError, r"Received: images.shape\[-1\]=2"
        ):
            two_view_dataset(random_images((4, 8, 8, 2)), 2, 8)
        with self.assertRaisesRegex(ValueError, "Received: images.shape"):
            two_view_dataset(random_images((4, 8)), 2, 8)
