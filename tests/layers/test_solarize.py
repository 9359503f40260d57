import numpy as np
from absl.testing import parameterized

from keras_featreg.layers.solarize import Solarize
from tests import helpers as testing


def random_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("uint8")


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

    def test_layer_checks(self):
        # Symbolic calls, output shapes, mixed precision, serialization.
        self.run_layer_test(
            Solarize,
            init_kwargs={},
            input_shape=(2, 8, 9, 3),
            expected_output_shape=(2, 8, 9, 3),
            supports_masking=False,
            run_training_check=False,
        )
