import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.layers.random_resized_crop import NUM_UNIFORMS
from keras_featreg.layers.random_resized_crop import RandomResizedCrop
from keras_featreg.layers.random_resized_crop import crop_and_resize
from keras_featreg.layers.random_resized_crop import sample_crop_boxes
from tests import helpers as testing


def numpy_crop_box(height, width, scale, ratio, u):
    """torchvision's `RandomResizedCrop.get_params`, fed the draws `u`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(10):
        fraction = scale[0] + u[attempt] * (scale[1] - scale[0])
        log_aspect = log_ratio[0] + u[10 + attempt] * (
            log_ratio[1] - log_ratio[0]
        )
        aspect = math.exp(log_aspect)
        w = int(round(math.sqrt(area * fraction * aspect)))
        h = int(round(math.sqrt(area * fraction / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(u[20] * (height - h + 1))  # randint(0, height - h + 1)
            left = int(u[21] * (width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def numpy_crop_resize(image, box, size):
    """Bilinear resize of a box, corner pixels onto corner pixels."""
    top, left, h, w = box
    height, width, _ = image.shape
    image = image.astype(np.float64)
    out = np.zeros(size + image.shape[-1:])
    for row in range(size[0]):
        y = top + (
            row * (h - 1) / (size[0] - 1) if size[0] > 1 else 0.5 * (h - 1)
        )
        y0 = int(math.floor(y))
        y1, dy = min(y0 + 1, height - 1), y - y0
        for col in range(size[1]):
            x = left + (
                col * (w - 1) / (size[1] - 1) if size[1] > 1 else 0.5 * (w - 1)
            )
            x0 = int(math.floor(x))
            x1, dx = min(x0 + 1, width - 1), x - x0
            top_row = (1 - dx) * image[y0, x0] + dx * image[y0, x1]
            bottom_row = (1 - dx) * image[y1, x0] + dx * image[y1, x1]
            out[row, col] = (1 - dy) * top_row + dy * bottom_row
    return out


def random_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("uint8")


class RandomResizedCropTest(testing.TestCase):
    @parameterized.parameters(
        (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
        (10, 40, (0.08, 1.0), (3 / 4, 4 / 3)),  # wide: many misses
        (40, 10, (0.5, 1.0), (3 / 4, 4 / 3)),  # tall: fallback often
        (7, 5, (0.9, 1.0), (2.0, 3.0)),  # fallback with clipped ratio
        (1, 1, (0.08, 1.0), (3 / 4, 4 / 3)),
    )
    def test_boxes_match_torchvision(self, height, width, scale, ratio):
        uniforms = np.random.default_rng(height + width).random(
            (300, NUM_UNIFORMS), dtype=np.float32
        )
        boxes = np.asarray(
            sample_crop_boxes(height, width, scale, ratio, uniforms)
        )
        expected = [
            numpy_crop_box(height, width, scale, ratio, u.astype(np.float64))
            for u in uniforms
        ]
        np.testing.assert_array_equal(boxes, np.array(expected))
        top, left, h, w = boxes.T
        self.assertTrue(np.all((h >= 1) & (w >= 1)))
        self.assertTrue(np.all((top >= 0) & (top + h <= height)))
        self.assertTrue(np.all((left >= 0) & (left + w <= width)))

    def test_crop_and_resize_matches_numpy(self):
        images = random_images((3, 9, 12, 2)).astype("float32")
        boxes = np.array([[0, 0, 9, 12], [2, 3, 4, 5], [8, 11, 1, 1]])
        for size in [(5, 7), (1, 3), (16, 16)]:
            outputs = crop_and_resize(images, boxes, size)
            for image, box, output in zip(images, boxes, outputs, strict=True):
                expected = numpy_crop_resize(image, box, size)
                self.assertAllClose(output, expected, atol=1e-3)

    def test_layer_uses_sampled_boxes(self):
        images = random_images((4, 20, 30, 3))
        layer = RandomResizedCrop(8, 6, seed=5)
        boxes = layer.get_random_transformation(tf.constant(images))
        outputs = layer.transform_images(images, boxes)
        for image, box, output in zip(images, boxes, outputs, strict=True):
            expected = numpy_crop_resize(image, np.asarray(box), (8, 6))
            self.assertAllClose(output, expected, atol=1e-3)

    def test_shapes_dtype_and_value_range(self):
        images = random_images((5, 24, 32, 3))
        layer = RandomResizedCrop(16, 12, seed=1)
        outputs = layer(images)
        self.assertEqual(outputs.shape, (5, 16, 12, 3))
        self.assertEqual(outputs.dtype, "float32")
        # Bilinear weights are convex: no value leaves the input's range.
        self.assertGreaterEqual(float(np.min(outputs)), float(images.min()))
        self.assertLessEqual(float(np.max(outputs)), float(images.max()))
        self.assertEqual(layer(images[0]).shape, (16, 12, 3))
        self.assertEqual(
            layer.compute_output_shape((None, 5, 7, 3)), (None, 16, 12, 3)
        )

    def test_random_per_image_and_per_call(self):
        images = np.repeat(random_images((1, 32, 32, 3)), 6, axis=0)
        layer = RandomResizedCrop(16, 16, seed=0)
        first = np.asarray(layer(images))
        for i in range(1, 6):
            self.assertNotAllClose(first[0], first[i])
        self.assertNotAllClose(first, layer(images))

    def test_same_seed_same_crops(self):
        images = random_images((4, 32, 32, 3))
        a = RandomResizedCrop(16, 16, seed=7)
        b = RandomResizedCrop(16, 16, seed=7)
        self.assertAllClose(a(images), b(images))
        self.assertAllClose(a(images), b(images))

    def test_inference_is_center_crop(self):
        images = random_images((2, 10, 20, 1))
        layer = RandomResizedCrop(5, 5, seed=0)
        outputs = layer(images, training=False)
        for image, output in zip(images, outputs, strict=True):
            expected = numpy_crop_resize(image, (0, 5, 10, 10), (5, 5))
            self.assertAllClose(output, expected, atol=1e-3)
        same_size = RandomResizedCrop(10, 20)(images, training=False)
        self.assertAllClose(same_size, images.astype("float32"), atol=0)

    def test_tf_data(self):
        images = random_images((6, 20, 24, 3))
        layer = RandomResizedCrop(8, 8, seed=0)
        per_image = tf.data.Dataset.from_tensor_slices(images).map(
            layer, num_parallel_calls=2
        )
        for output in per_image:
            self.assertEqual(output.shape, (8, 8, 3))
        batched = (
            tf.data.Dataset.from_tensor_slices(images)
            .batch(3)
            .map(layer, num_parallel_calls=2)
        )
        for output in batched:
            self.assertEqual(output.shape, (3, 8, 8, 3))

        def varying_sizes():
            for size in (9, 17, 30):
                yield random_images((size, 40 - size, 3), seed=size)

        dataset = tf.data.Dataset.from_generator(
            varying_sizes,
            output_signature=tf.TensorSpec((None, None, 3), tf.uint8),
        ).map(layer)
        self.assertEqual([tuple(x.shape) for x in dataset], [(8, 8, 3)] * 3)

    def test_channels_first(self):
        images = random_images((2, 3, 20, 24))
        layer = RandomResizedCrop(8, 6, data_format="channels_first", seed=0)
        self.assertEqual(layer(images).shape, (2, 3, 8, 6))
        centered = layer(images, training=False)
        expected = RandomResizedCrop(8, 6, data_format="channels_last")(
            np.transpose(images, (0, 2, 3, 1)), training=False
        )
        self.assertAllClose(centered, np.transpose(expected, (0, 3, 1, 2)))

    def test_channels_first_single_image(self):
        # Used to fail: the single image was transposed before batching.
        image = random_images((3, 20, 24))
        layer = RandomResizedCrop(8, 6, data_format="channels_first")
        outputs = layer(image, training=False)
        expected = layer(image[np.newaxis], training=False)[0]
        self.assertEqual(tuple(outputs.shape), (3, 8, 6))
        self.assertAllClose(outputs, expected)

    def test_dict_inputs_are_not_modified(self):
        images = random_images((2, 12, 12, 3))
        data = {"images": images, "labels": np.array([3, 5])}
        outputs = RandomResizedCrop(6, 6, seed=0)(data)
        self.assertIs(data["images"], images)
        self.assertEqual(tuple(outputs["images"].shape), (2, 6, 6, 3))
        self.assertAllEqual(outputs["labels"], [3, 5])
        with self.assertRaisesRegex(ValueError, "bounding boxes"):
            RandomResizedCrop(6, 6)(
                {"images": images, "bounding_boxes": {"boxes": np.zeros(4)}}
            )

    def test_segmentation_masks_use_nearest(self):
        images = random_images((2, 12, 12, 3))
        masks = random_images((2, 12, 12, 1)) % 4
        layer = RandomResizedCrop(6, 6, seed=0)
        outputs = layer({"images": images, "segmentation_masks": masks})
        values = np.unique(np.asarray(outputs["segmentation_masks"]))
        self.assertTrue(set(values.tolist()) <= {0.0, 1.0, 2.0, 3.0})

    def test_degenerate_inputs_are_finite(self):
        layer = RandomResizedCrop(4, 4, seed=0)
        for images in [
            np.zeros((3, 1, 1, 1), "float32"),
            np.full((2, 5, 5, 3), 1e30, "float32"),
            np.zeros((2, 6, 6, 3), "float16"),
        ]:
            self.assertTrue(np.all(np.isfinite(layer(images))))

    def test_config(self):
        self.run_class_serialization_test(
            RandomResizedCrop(
                20, 30, scale=(0.2, 0.9), interpolation="nearest", seed=3
            )
        )

    def test_layer_checks(self):
        self.run_layer_test(
            RandomResizedCrop,
            init_kwargs={"height": 4, "width": 5, "seed": 1},
            input_shape=(2, 8, 9, 3),
            expected_output_shape=(2, 4, 5, 3),
            supports_masking=False,
            run_training_check=False,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: height=0"):
            RandomResizedCrop(0, 5)
        with self.assertRaisesRegex(
            ValueError, r"Received: scale=\(0.5, 0.1\)"
        ):
            RandomResizedCrop(5, 5, scale=(0.5, 0.1))
        with self.assertRaisesRegex(ValueError, r"Received: ratio=\(0, 1\)"):
            RandomResizedCrop(5, 5, ratio=(0, 1))
        with self.assertRaisesRegex(ValueError, "Received: scale=0.5"):
            RandomResizedCrop(5, 5, scale=0.5)
        with self.assertRaisesRegex(
            ValueError, "Received: interpolation='bicubic'"
        ):
            RandomResizedCrop(5, 5, interpolation="bicubic")
        with self.assertRaisesRegex(TypeError, "Received: seed=1.5"):
            RandomResizedCrop(5, 5, seed=1.5)

    def test_fit_smoke(self):
        inputs = keras.Input((12, 12, 3))
        x = RandomResizedCrop(8, 8, seed=0)(inputs)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(2)(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss="mse")
        images = random_images((8, 12, 12, 3)).astype("float32") / 255
        history = model.fit(
            images, np.zeros((8, 2)), batch_size=4, epochs=1, verbose=0
        )
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertEqual(model.predict(images, verbose=0).shape, (8, 2))
