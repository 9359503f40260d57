"""ProxyAnchor's home is `layers`; the old paths and saved names still work.

The layer's maths and training are tested in tests/losses/test_proxy_anchor.py.
"""

import keras
import numpy as np

from keras_featreg import layers
from keras_featreg import losses
from keras_featreg.losses import proxy_anchor
from tests import helpers as testing


class ProxyAnchorHomeTest(testing.TestCase):
    def test_old_import_paths(self):
        self.assertIs(losses.ProxyAnchor, layers.ProxyAnchor)
        self.assertIs(proxy_anchor.ProxyAnchor, layers.ProxyAnchor)
        self.assertEqual(
            layers.ProxyAnchor.__module__, "keras_featreg.layers.proxy_anchor"
        )

    def test_config_saved_from_the_old_module_deserializes(self):
        layer = layers.ProxyAnchor(num_classes=3, name="head")
        config = keras.saving.serialize_keras_object(layer)
        self.assertEqual(config["registered_name"], "keras_featreg>ProxyAnchor")
        # A `.keras` file written before the move names the old module.
        config["module"] = "keras_featreg.losses.proxy_anchor"
        revived = keras.saving.deserialize_keras_object(config)
        self.assertIsInstance(revived, layers.ProxyAnchor)
        self.assertEqual(revived.num_classes, 3)
        self.assertIs(
            keras.saving.get_registered_object("keras_featreg>ProxyAnchor"),
            layers.ProxyAnchor,
        )

    def test_saved_model_round_trip(self):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, layers.ProxyAnchor(num_classes=3)(inputs))
        path = f"{self.get_temp_dir()}/head.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
        self.assertAllClose(restored(x), model(x), atol=0, rtol=0)
