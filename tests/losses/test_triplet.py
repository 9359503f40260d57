import keras
import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from keras_featreg.distribute import get_strategy
from tests import helpers as testing
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import numpy_distance
from tests.losses.common import numpy_share
from tests.losses.common import random_embeddings


def numpy_distances(x, squared=False):
    b = len(x)
    d = np.array(
        [[numpy_distance(x[i], x[j]) for j in range(b)] for i in range(b)]
    )
    return d**2 if squared else d


def numpy_batch_hard(labels, x, margin=0.2, squared=False):
    """Per anchor: the largest loss over all of its (p, n) triplets.

    relu is monotone, so max over triplets of relu(d_ap - d_an + m) is the
    triplet of the farthest positive and the closest negative.
    """
    d = numpy_distances(x, squared)
    b = len(labels)
    per_anchor = {}
    for a in range(b):
        triplet_losses = [
            max(d[a, p] - d[a, n] + margin, 0.0)
            for p in range(b)
            for n in range(b)
            if p != a and labels[p] == labels[a] and labels[n] != labels[a]
        ]
        if triplet_losses:
            per_anchor[(a,)] = max(triplet_losses)
    return numpy_share(per_anchor, b)


def numpy_semihard(labels, x, margin=0.2, squared=False):
    """Per (a, p): closest negative farther than p, else closest negative."""
    d = numpy_distances(x, squared)
    b = len(labels)
    per_pair = {}
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            negatives = [n for n in range(b) if labels[n] != labels[a]]
            if not negatives:
                continue
            farther = [d[a, n] for n in negatives if d[a, n] > d[a, p]]
            if farther:
                d_an = min(farther)
            else:
                d_an = min(d[a, n] for n in negatives)
            per_pair[(a, p)] = max(d[a, p] - d_an + margin, 0.0)
    return numpy_share(per_pair, b)


class TripletLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.TripletLoss())
        revived = self.run_class_serialization_test(
            losses.TripletLoss(margin=0.5, mining="semihard", squared=True)
        )
        self.assertEqual(revived.mining, "semihard")

    @parameterized.product(
        label_set=sorted(LABEL_SETS),
        margin=[0.2, 1.0],
        squared=[False, True],
    )
    def test_batch_hard(self, label_set, margin, squared):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True)
        expected = numpy_batch_hard(labels, x, margin, squared)
        loss = losses.TripletLoss(margin, squared=squared, reduction=None)
        self.assertAllClose(loss(labels, x), expected, atol=1e-5)
        self.assertAllClose(
            losses.TripletLoss(margin, squared=squared)(labels, x),
            expected.mean(),
            atol=1e-5,
        )

    @parameterized.product(
        label_set=sorted(LABEL_SETS),
        margin=[0.2, 1.0],
        squared=[False, True],
    )
    def test_semihard(self, label_set, margin, squared):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True, seed=3)
        expected = numpy_semihard(labels, x, margin, squared)
        loss = losses.TripletLoss(
            margin, "semihard", squared=squared, reduction=None
        )
        self.assertAllClose(loss(labels, x), expected, atol=1e-5)
        self.assertAllClose(
            losses.triplet_loss(labels, x, margin, "semihard", squared),
            expected,
            atol=1e-5,
        )

    def test_mining_by_hand(self):
        # 1-D points: class 0 at 0, 1, 3; class 1 at 2.5, 10.
        labels = np.array([0, 0, 0, 1, 1])
        x = np.array([[0.0], [1.0], [3.0], [2.5], [10.0]], "float32")
        m = 0.2
        # Batch hard, anchor 0: farthest positive 3, closest negative 2.5.
        hard = losses.triplet_loss(labels, x, m, "hard")
        expected_hard = np.array(
            [
                3.0 - 2.5 + m,  # a=0
                2.0 - 1.5 + m,  # a=1: p=3 (d 2), n=2.5 (d 1.5)
                max(3.0 - 0.5 + m, 0),  # a=2: p=0 (d 3), n=2.5 (d .5)
                max(7.5 - 0.5 + m, 0),  # a=3: p=10 (d 7.5), n=3 (d .5)
                max(7.5 - 7.0 + m, 0),  # a=4: p=2.5 (d 7.5), n=3 (d 7)
            ]
        )
        self.assertAllClose(hard, expected_hard, atol=1e-5)
        # Semi-hard, pair (0, 1): d_ap = 1, negatives at 2.5 and 10:
        # the closest farther one is 2.5 -> relu(1 - 2.5 + m) = 0.
        # Pair (2, 0): d_ap = 3, negatives at 0.5 and 7: 7 is the only
        # farther one -> relu(3 - 7 + m) = 0. Pair (3, 4): d_ap = 7.5,
        # negatives at 2.5, 1.5, 0.5: none farther -> the closest, 0.5.
        # Pair (4, 3): d_ap = 7.5, negatives at 10, 9, 7: semi-hard is 9
        # (batch hard would take 7).
        semihard = {
            (0, 1): max(1 - 2.5 + m, 0),
            (0, 2): max(3 - 10 + m, 0),
            (1, 0): max(1 - 1.5 + m, 0),
            (1, 2): max(2 - 9 + m, 0),
            (2, 0): max(3 - 7 + m, 0),
            (2, 1): max(2 - 7 + m, 0),
            (3, 4): 7.5 - 0.5 + m,
            (4, 3): max(7.5 - 9 + m, 0),
        }
        expected_semihard = np.zeros(5)
        for (a, _), value in semihard.items():
            expected_semihard[a] += value * 5 / len(semihard)
        self.assertAllClose(
            losses.triplet_loss(labels, x, m, "semihard"),
            expected_semihard,
            atol=1e-5,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: margin=-1"):
            losses.TripletLoss(margin=-1)
        with self.assertRaisesRegex(ValueError, "Received: mining='easy'"):
            losses.TripletLoss(mining="easy")
        with self.assertRaisesRegex(ValueError, "Received: mining='all'"):
            losses.triplet_loss([0, 0], np.ones((2, 2), "float32"), 0.2, "all")
        with self.assertRaisesRegex(TypeError, "Received: squared='no'"):
            losses.TripletLoss(squared="no")

    def test_fit(self):
        _, history = fit_smoke(self, losses.TripletLoss(margin=0.5))
        self.assertLess(history[-1], history[0])

    def test_fit_semihard(self):
        fit_smoke(self, losses.TripletLoss(margin=0.5, mining="semihard"))

    def test_mirrored_strategy_mines_per_replica(self):
        # Each replica mines its own half batch; Keras averages the replicas.
        rng = np.random.default_rng(0)
        order = rng.permutation(16)
        x = rng.normal(size=(16, 6)).astype("float32")[order]
        y = np.repeat(np.arange(4), 4)[order]
        strategy = get_strategy("mirrored", ["CPU:0", "CPU:1"])
        with strategy.scope():
            model = keras.Sequential(
                [
                    keras.Input((6,)),
                    keras.layers.Dense(
                        4,
                        kernel_initializer=keras.initializers.GlorotUniform(1),
                    ),
                ]
            )
            model.compile(optimizer="sgd", loss=losses.TripletLoss())
        evaluated = model.evaluate(x, y, batch_size=16, verbose=0)
        z = model(x)
        loss = losses.TripletLoss()
        halves = (loss(y[:8], z[:8]) + loss(y[8:], z[8:])) / 2
        self.assertAllClose(evaluated, halves, rtol=1e-5)


def numpy_tf_triplet_semihard_loss(labels, x, margin=1.0):
    """TF's `triplet_semihard_loss` semantics (tf.contrib / TF Addons with
    squared-L2, the SVMax `ranking/semi_hard_triplet.py`), pair by pair:
    for every positive pair (a, p), the closest negative with
    D_an > D_ap, else the FARTHEST negative; squared distances;
    mean over all positive pairs of relu(D_ap - D_an + margin)."""
    d = numpy_distances(x, squared=True)
    b = len(labels)
    terms = []
    for a in range(b):
        negatives = [n for n in range(b) if labels[n] != labels[a]]
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            outside = [d[a, n] for n in negatives if d[a, n] > d[a, p]]
            d_an = min(outside) if outside else max(d[a, n] for n in negatives)
            terms.append(max(d[a, p] - d_an + margin, 0.0))
    return np.mean(terms)


class TensorFlowSemiHardTest(testing.TestCase):
    def test_config(self):
        revived = self.run_class_serialization_test(
            losses.TripletLoss(mining="semihard", fallback="farthest")
        )
        self.assertEqual(revived.fallback, "farthest")
        self.assertEqual(losses.TripletLoss().fallback, "closest")

    @parameterized.product(
        label_set=["pk", "unbalanced", "two_classes"],
        margin=[0.2, 1.0],
        seed=[0, 1, 2],
    )
    def test_equals_tensorflow_rule(self, label_set, margin, seed):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True, seed=seed)
        loss = losses.TripletLoss(
            margin, mining="semihard", squared=True, fallback="farthest"
        )
        expected = numpy_tf_triplet_semihard_loss(labels, x, margin)
        self.assertAllClose(loss(labels, x), expected, atol=1e-5)

    def test_fallback_picks_the_farthest_negative(self):
        # 1-D: a=0, p=3 (class 0); negatives at 1 and 2, both closer than
        # p: no semi-hard negative. Closest fallback: n=1; farthest: n=2.
        labels = np.array([0, 0, 1, 1])
        x = np.array([[0.0], [3.0], [1.0], [2.0]], "float32")
        per_pair = {}
        for fallback, d_an in (("closest", 1.0), ("farthest", 4.0)):
            value = losses.triplet_loss(
                labels, x, 0.5, "semihard", True, fallback
            )
            per_pair[fallback] = np.asarray(value)
            # Anchor 0's only pair: relu(9 - D_an + 0.5), share 4 / 4.
            self.assertAllClose(per_pair[fallback][0], 9.0 - d_an + 0.5)

    def test_invalid_fallback(self):
        with self.assertRaisesRegex(ValueError, "Received: fallback='x'"):
            losses.TripletLoss(fallback="x")
