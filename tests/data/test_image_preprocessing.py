import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from keras.applications import imagenet_utils

from keras_featreg.data import normalize_image
from keras_featreg.data import retrieval_preprocess


def random_image(height, width, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


class NormalizeImageTest(parameterized.TestCase):
    @parameterized.parameters("torch", "caffe", "tf")
    def test_matches_keras_applications(self, mode):
        image = random_image(5, 6).astype(np.float32)
        expected = imagenet_utils.preprocess_input(image.copy(), mode=mode)
        np.testing.assert_allclose(
            normalize_image(image, mode), expected, rtol=1e-5, atol=1e-4
        )

    def test_none_keeps_pixels(self):
        image = random_image(3, 3)
        result = normalize_image(image, "none")
        self.assertEqual(result.dtype, tf.float32)
        np.testing.assert_array_equal(result, image.astype(np.float32))

    def test_invalid_normalization(self):
        with self.assertRaisesRegex(ValueError, "Received: normalization='x'"):
            normalize_image(random_image(2, 2), "x")


class RetrievalPreprocessTest(parameterized.TestCase):
    @parameterized.parameters("png", "jpeg", "pixels")
    def test_eval_resizes_then_center_crops(self, encoding):
        # image_size 56 -> shorter side 64: a 64 x 96 image is not resized,
        # so the result is exactly its central 56 x 56 crop (png is lossless).
        image = random_image(64, 96)
        if encoding == "png":
            image_input = tf.io.encode_png(image)
        elif encoding == "jpeg":
            image_input = tf.io.encode_jpeg(image)
            image = tf.io.decode_jpeg(image_input).numpy()
        else:
            image_input = image
        result = retrieval_preprocess(56, normalization="none")(image_input)
        self.assertEqual(result.shape, (56, 56, 3))
        self.assertEqual(result.dtype, tf.float32)
        np.testing.assert_allclose(result, image[4:60, 20:76], atol=1e-3)

    def test_eval_shorter_side_scaling(self):
        # A constant 100 x 200 image resized to 256 x 512 then cropped.
        image = np.full((100, 200, 3), 200, np.uint8)
        result = retrieval_preprocess(224, normalization="tf")(image)
        self.assertEqual(result.shape, (224, 224, 3))
        np.testing.assert_allclose(result, 200 / 127.5 - 1, atol=1e-5)

    def test_grayscale_becomes_rgb(self):
        image = random_image(30, 40, channels=1)
        result = retrieval_preprocess(16, normalization="none")(
            tf.io.encode_png(image)
        )
        self.assertEqual(result.shape, (16, 16, 3))
        np.testing.assert_allclose(result[..., 0], result[..., 2])

    def test_training_is_random_and_in_range(self):
        image = tf.io.encode_png(random_image(40, 60))
        preprocess = retrieval_preprocess(24, training=True)
        first, second = preprocess(image), preprocess(image)
        self.assertEqual(first.shape, (24, 24, 3))
        self.assertFalse(np.allclose(first, second))
        low = normalize_image(tf.zeros(3), "torch").numpy()
        high = normalize_image(tf.fill([3], 255.0), "torch").numpy()
        self.assertTrue(np.all(first >= low - 1e-4))
        self.assertTrue(np.all(first <= high + 1e-4))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: image_size=0"):
            retrieval_preprocess(0)
        with self.assertRaisesRegex(TypeError, "Received: training=1"):
            retrieval_preprocess(224, training=1)
        with self.assertRaisesRegex(ValueError, "Received: normalization="):
            retrieval_preprocess(224, normalization="imagenet")
