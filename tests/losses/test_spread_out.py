import json
import zipfile

import keras
import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from keras_featreg.distribute import get_strategy
from keras_featreg.losses.triplet import triplet_negative_counts
from keras_featreg.ops.pair_selection import random_negative_mask
from tests import helpers as testing
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


class SpreadOutLossNameTest(testing.TestCase):
    """Issue 12.4: `SpreadOutLoss`, formerly `SpreadOutRegularizer`."""

    # What `keras.saving.serialize_keras_object` wrote for the class under
    # its former name (saved from the code before the rename).
    OLD_CONFIG = {
        "module": "keras_featreg.losses.spread_out",
        "class_name": "SpreadOutRegularizer",
        "config": {
            "name": "spread_out_regularizer",
            "reduction": "sum_over_batch_size",
            "factor": 0.5,
            "negatives": "all",
            "seed": 3,
        },
        "registered_name": "keras_featreg>SpreadOutRegularizer",
    }

    def test_old_name_is_an_alias(self):
        self.assertIs(losses.SpreadOutRegularizer, losses.SpreadOutLoss)
        self.assertEqual(losses.SpreadOutLoss().name, "spread_out_loss")
        self.run_class_serialization_test(losses.SpreadOutLoss(seed=3))

    def test_old_configs_still_load(self):
        loss = keras.saving.deserialize_keras_object(self.OLD_CONFIG)
        self.assertIsInstance(loss, losses.SpreadOutLoss)
        self.assertEqual(
            (loss.factor, loss.negatives, loss.seed, loss.name),
            (0.5, "all", 3, "spread_out_regularizer"),
        )
        self.assertEqual(
            keras.saving.get_registered_object(
                "keras_featreg>SpreadOutRegularizer"
            ),
            losses.SpreadOutLoss,
        )

    def test_old_keras_file_still_loads(self):
        # A .keras file whose compiled loss config names the old class.
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.compile(optimizer="sgd", loss=losses.SpreadOutLoss(seed=3))
        path = f"{self.get_temp_dir()}/model.keras"
        model.save(path)
        with zipfile.ZipFile(path) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
        config = json.loads(files["config.json"])
        config["compile_config"]["loss"] = self.OLD_CONFIG
        files["config.json"] = json.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded.loss, losses.SpreadOutLoss)
        self.assertEqual(loaded.loss.name, "spread_out_regularizer")


def numpy_triplet_pairs(labels, x, mining, fallback="closest"):
    """The (anchor, negative) pair of every triplet `triplet_loss` mines."""
    x = np.float64(x)
    b = len(labels)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    pairs = []
    for a in range(b):
        negatives = [n for n in range(b) if labels[n] != labels[a]]
        positives = [p for p in range(b) if p != a and labels[p] == labels[a]]
        if not negatives or not positives:
            continue
        closest = min(negatives, key=lambda n: (d[a, n], n))
        if mining == "hard":
            pairs.append((a, closest))
            continue
        farthest = max(negatives, key=lambda n: (d[a, n], -n))
        for p in positives:
            farther = [n for n in negatives if d[a, n] > d[a, p]]
            if farther:
                pairs.append((a, min(farther, key=lambda n: (d[a, n], n))))
            else:
                pairs.append(
                    (a, farthest if fallback == "farthest" else closest)
                )
    return pairs


class TripletNegativesTest(testing.TestCase):
    def test_config(self):
        revived = self.run_class_serialization_test(
            losses.SpreadOutLoss(
                negatives="triplet", mining="semihard", fallback="farthest"
            )
        )
        self.assertEqual(revived.negatives, "triplet")
        self.assertEqual(revived.mining, "semihard")
        self.assertEqual(revived.fallback, "farthest")

    @parameterized.product(
        label_set=sorted(LABEL_SETS),
        choice=[
            ("hard", "closest"),
            ("semihard", "closest"),
            ("semihard", "farthest"),
        ],
        seed=[0, 1],
    )
    def test_uses_the_triplets_negatives(self, label_set, choice, seed):
        mining, fallback = choice
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True, seed=seed)
        pairs = numpy_triplet_pairs(labels, x, mining, fallback)
        expected = numpy_spread_out(labels, x, pairs)
        loss = losses.SpreadOutLoss(
            negatives="triplet", mining=mining, fallback=fallback
        )
        self.assertAllClose(loss(labels, x), expected[0], atol=1e-6)
        counts = np.zeros((len(labels), len(labels)))
        for a, n in pairs:
            counts[a, n] += 1
        self.assertAllClose(
            triplet_negative_counts(labels, x, mining, fallback), counts
        )

    def test_invalid_mining(self):
        with self.assertRaisesRegex(ValueError, "Received: mining='x'"):
            losses.SpreadOutLoss(negatives="triplet", mining="x")
        with self.assertRaisesRegex(ValueError, "Received: fallback='x'"):
            losses.SpreadOutLoss(fallback="x")

    def test_fit_with_triplet_loss(self):
        fit_smoke(self, losses.SpreadOutLoss(negatives="triplet"))
