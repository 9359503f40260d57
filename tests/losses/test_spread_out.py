import keras
import numpy as np
from absl.testing import parameterized
from keras.src import testing

from keras_featreg import losses
from keras_featreg.distribute import get_strategy
from keras_featreg.ops.pairwise import random_negative_mask
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import random_embeddings


def numpy_spread_out(labels, x, pairs=None):
    """GOR over the given (a, n) pairs, default every anchor-negative pair."""
    x = np.float64(x)
    b, dim = x.shape
    if pairs is None:
        pairs = [
            (a, n) for a in range(b) for n in range(b) if labels[a] != labels[n]
        ]
    if not pairs:
        return np.zeros(b)
    dots = np.array([x[a] @ x[n] for a, n in pairs])
    value = np.mean(dots) ** 2 + max(np.mean(dots**2) - 1.0 / dim, 0.0)
    return np.full(b, value)


class SpreadOutRegularizerTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.SpreadOutRegularizer())
        revived = self.run_class_serialization_test(
            losses.SpreadOutRegularizer(factor=0.5, negatives="all", seed=3)
        )
        self.assertEqual(
            (revived.factor, revived.negatives, revived.seed), (0.5, "all", 3)
        )

    @parameterized.product(label_set=sorted(LABEL_SETS), factor=[1.0, 0.3])
    def test_all_negatives(self, label_set, factor):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True)
        expected = factor * numpy_spread_out(labels, x)
        loss = losses.SpreadOutRegularizer(
            factor, negatives="all", reduction=None
        )
        self.assertAllClose(loss(labels, x), expected, atol=1e-6)

    @parameterized.parameters(sorted(LABEL_SETS))
    def test_random_negatives(self, label_set):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True, seed=4)
        # An int seed gives the same draw for the same batch: read it back.
        mask = random_negative_mask(labels, seed=7).numpy()
        pairs = [tuple(ij) for ij in np.argwhere(mask)]
        self.assertLen(pairs, len(labels))  # every anchor has a negative
        for a, n in pairs:
            self.assertNotEqual(labels[a], labels[n])
        self.assertAllClose(
            losses.spread_out_loss(labels, x, "random", seed=7),
            numpy_spread_out(labels, x, pairs),
            atol=1e-6,
        )

    def test_random_negatives_are_uniform_and_seeded(self):
        labels = np.array([0, 0, 1, 2, 3])
        generator = keras.random.SeedGenerator(11)
        counts = np.zeros((5, 5))
        draws = [random_negative_mask(labels, generator) for _ in range(300)]
        for mask in draws:
            counts += mask.numpy()
        # Anchor 0 has 3 negatives (2, 3, 4): each drawn ~100 times out of
        # 300 (std ~8); never its positive or itself.
        self.assertAllEqual(counts[0, :2], [0, 0])
        self.assertTrue(np.all(np.abs(counts[0, 2:] - 100) < 40), counts[0])
        self.assertAllEqual(counts.sum(axis=1), np.full(5, 300))
        # The same seed gives the same sequence of draws; another differs.
        again = keras.random.SeedGenerator(11)
        self.assertAllEqual(
            draws[0], random_negative_mask(labels, again).numpy()
        )
        x = random_embeddings(np.arange(16), normalize=True)
        first = losses.SpreadOutRegularizer(seed=1)
        second = losses.SpreadOutRegularizer(seed=1)
        other = losses.SpreadOutRegularizer(seed=2)
        y = np.arange(16) % 5
        values = [first(y, x), first(y, x)]
        self.assertAllClose(values, [second(y, x), second(y, x)])
        self.assertNotAllClose(values[0], values[1])
        self.assertNotAllClose(values[0], other(y, x))

    def test_single_class_is_zero(self):
        x = random_embeddings(np.zeros(4), normalize=True)
        for negatives in ("random", "all"):
            value = losses.spread_out_loss(np.zeros(4, int), x, negatives)
            self.assertAllClose(value, np.zeros(4))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: factor=-1"):
            losses.SpreadOutRegularizer(factor=-1)
        with self.assertRaisesRegex(ValueError, "Received: negatives='hard'"):
            losses.SpreadOutRegularizer(negatives="hard")
        with self.assertRaisesRegex(TypeError, "Received: seed=1.5"):
            losses.SpreadOutRegularizer(seed=1.5)

    def test_fit(self):
        fit_smoke(self, losses.SpreadOutRegularizer(negatives="all"))

    def test_fit_random_negatives(self):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.compile(optimizer="sgd", loss=losses.SpreadOutRegularizer(seed=0))
        x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
        history = model.fit(x, np.arange(16) % 4, batch_size=8, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_mirrored_strategy_runs(self):
        strategy = get_strategy("mirrored", ["CPU:0", "CPU:1"])
        with strategy.scope():
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
            model.compile(
                optimizer="sgd", loss=losses.SpreadOutRegularizer(seed=0)
            )
        x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
        history = model.fit(x, np.arange(16) % 4, batch_size=8, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
