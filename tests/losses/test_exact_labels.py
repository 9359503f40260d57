"""Integer labels stay exact through `keras.losses.Loss.__call__`.

Keras casts `y_true` to the loss dtype (float32) before `call`: 2**24 and
2**24 + 1 are then one class, and 2**31 - 1, 2**31 - 2, ... all become
2**31. Each loss must give, on such integer ids, its value on small ids
with the same equality structure, which differs from the value on the
float32-merged ids (the value before the fix, or its eager error).
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import distribute
from keras_featreg import losses
from keras_featreg import regularizers
from keras_featreg.losses import labels as labels_module
from keras_featreg.losses.regularized import RegularizedLoss
from tests import helpers as testing
from tests.losses.common import random_embeddings
from tests.losses.test_contrastive import numpy_contrastive_loss

# Small ids, P x K (every anchor has a positive and a negative).
SMALL = np.array([0, 1, 0, 1, 2, 3, 2, 3])

# Large ids `base + sign * SMALL`, and the integer dtypes that hold them.
# In float32, 2**24 + {0, 1} merge (and 2**24 + 3 rounds to 2**24 + 4);
# 2**31 - {1, ..., 4} all round to 2**31; int64's largest ids too.
LARGE = {
    "2**24": (2**24, 1, ("int32", "int64")),
    "2**31-1": (2**31 - 1, -1, ("int32", "int64")),
    "2**63-1": (2**63 - 1, -1, ("int64",)),
}
CASES = [
    (f"{name}_{dtype}", name, dtype)
    for name, (_, _, dtypes) in LARGE.items()
    for dtype in dtypes
]


def large_ids(name, dtype):
    base, sign, _ = LARGE[name]
    return (np.int64(base) + sign * SMALL.astype("int64")).astype(dtype)


def remap(ids):
    """Small ids 0, 1, ... with the same equality structure as `ids`."""
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def float32_merged(ids):
    """The small ids of what Keras' float32 cast makes of `ids`."""
    return remap(np.asarray(ids).astype("float32"))


def triplet_svmax():
    return RegularizedLoss(
        losses.TripletLoss(margin=0.5),
        regularizers.SVMaxRegularizer(factor=0.5),
        reduction=None,
    )


# Every loss taking class labels, per sample (`reduction=None`).
LOSSES = {
    "contrastive": lambda: losses.ContrastiveLoss(reduction=None),
    "triplet_hard": lambda: losses.TripletLoss(0.5, reduction=None),
    "triplet_semihard": lambda: losses.TripletLoss(
        0.5, mining="semihard", reduction=None
    ),
    "n_pair": lambda: losses.NPairLoss(reduction=None),
    "angular": lambda: losses.AngularLoss(reduction=None),
    "lifted_structure": lambda: losses.LiftedStructureLoss(reduction=None),
    "spread_out_all": lambda: losses.SpreadOutRegularizer(
        negatives="all", reduction=None
    ),
    "spread_out_random": lambda: losses.SpreadOutRegularizer(
        seed=3, reduction=None
    ),
    "regularized": triplet_svmax,
    "regularized_nested": lambda: RegularizedLoss(
        RegularizedLoss(losses.ContrastiveLoss()),
        regularizers.SVMaxRegularizer(factor=0.5),
        reduction=None,
    ),
}


def embeddings(seed=0):
    return random_embeddings(SMALL, dim=5, seed=seed, normalize=True)


def in_function(loss):
    return tf.function(lambda y_true, y_pred: loss(y_true, y_pred))


class ExactLabelsTest(testing.TestCase):
    @parameterized.named_parameters(
        (f"{loss}_{case}_{mode}", loss, name, dtype, mode)
        for loss in LOSSES
        for case, name, dtype in CASES
        for mode in ("eager", "function")
    )
    def test_large_ids_equal_small_ids(self, loss, name, dtype, mode):
        make_loss = LOSSES[loss]
        x = embeddings()
        ids = large_ids(name, dtype)
        expected = make_loss()(SMALL, x)
        wrap = in_function if mode == "function" else (lambda loss: loss)
        # Fresh losses: the random negatives are drawn again on each call.
        for y_true in (ids, tf.constant(ids)[:, None]):
            self.assertAllClose(
                wrap(make_loss())(y_true, x), expected, rtol=1e-6, atol=1e-6
            )
        # The float32 cast merges classes: a different value.
        merged = make_loss()(float32_merged(ids), x)
        self.assertNotAllClose(merged, expected, atol=1e-3)

    @parameterized.named_parameters(
        (case, name, dtype) for case, name, dtype in CASES
    )
    def test_contrastive_matches_numpy(self, name, dtype):
        x = embeddings(seed=1)
        ids = large_ids(name, dtype)
        # NumPy compares the int64 ids exactly, in float64.
        expected = numpy_contrastive_loss(ids.astype("int64"), x)
        loss = losses.ContrastiveLoss(reduction=None)
        self.assertAllClose(loss(ids, x), expected, atol=1e-5)
        self.assertAllClose(in_function(loss)(ids, x), expected, atol=1e-5)
        weights = np.linspace(0.5, 2.0, len(ids)).astype("float32")
        self.assertAllClose(
            losses.ContrastiveLoss()(ids, x, sample_weight=weights),
            np.mean(weights * expected),
            atol=1e-5,
        )
        merged = numpy_contrastive_loss(float32_merged(ids), x)
        self.assertNotAllClose(np.mean(merged), np.mean(expected), atol=1e-3)

    def test_regularized_call_passes_exact_labels(self):
        # `call` used directly (as a wrapping loss does): integer labels
        # reach the wrapped loss's `call` as they are.
        x = embeddings()
        ids = large_ids("2**31-1", "int32")
        for make_loss in (triplet_svmax, LOSSES["regularized_nested"]):
            self.assertAllClose(
                make_loss().call(ids, x),
                make_loss()(SMALL, x),
                rtol=1e-6,
                atol=1e-6,
            )

    def test_regularized_non_label_loss_is_unchanged(self):
        # A wrapped loss that does not take class labels (here MSE on
        # integer targets) still receives `y_true` cast by Keras.
        targets = np.arange(10, dtype="int32").reshape(2, 5)
        x = np.ones((2, 5), "float32")
        mse = keras.losses.MeanSquaredError(reduction=None)
        loss = RegularizedLoss(mse, reduction=None)
        self.assertFalse(loss.uses_exact_labels())
        self.assertAllClose(loss(targets, x), mse(targets, x))
        self.assertAllClose(
            loss(targets, x), np.mean((targets - 1.0) ** 2, axis=1)
        )

    def test_float_labels_are_unchanged(self):
        x = embeddings()
        loss = losses.ContrastiveLoss(reduction=None)
        expected = loss(SMALL, x)
        self.assertAllClose(loss(SMALL.astype("float32"), x), expected)
        self.assertAllClose(loss.call(SMALL.astype("float32"), x), expected)
        # Float ids beyond 2**24 are still refused eagerly.
        with self.assertRaisesRegex(ValueError, "magnitude <= 16777216"):
            loss(large_ids("2**31-1", "int64").astype("float32"), x)

    def test_labels_are_released(self):
        x = embeddings()
        loss = losses.TripletLoss()
        loss(large_ids("2**24", "int64"), x)
        self.assertEqual(labels_module._stacks(), {})
        with self.assertRaisesRegex(ValueError, "one entry per embedding"):
            loss(large_ids("2**24", "int64")[:3], x)
        self.assertEqual(labels_module._stacks(), {})
        # Outside `__call__`, `call` uses the labels it is given.
        small = tf.constant(SMALL, "float32")
        self.assertIs(loss.exact_labels(small), small)

    def test_proxy_anchor(self):
        # Class ids 2**24 and 2**24 + 1 need 2**24 + 2 proxies: one
        # (2, 2**24 + 2) batch of similarities (~2 GB of temporaries).
        ids = np.array([2**24, 2**24 + 1])
        num_classes = 2**24 + 2
        s = np.zeros((2, num_classes), "float32")
        s[0, ids] = [-0.2, 0.3]
        s[1, ids] = [-0.4, 0.1]
        margin, alpha = 0.1, 4.0

        def numpy_proxy_anchor(labels):
            member = labels[:, None] == np.arange(num_classes)[None, :]
            s64 = np.float64(s)
            pos = np.log1p(
                np.sum(np.where(member, np.exp(-alpha * (s64 - margin)), 0), 0)
            )
            neg = np.log1p(
                np.sum(np.where(member, 0, np.exp(alpha * (s64 + margin))), 0)
            )
            present = member.any(axis=0)
            return pos[present].mean() + neg.sum() / num_classes

        expected = numpy_proxy_anchor(ids)
        for dtype in ("int32", "int64"):
            loss = losses.ProxyAnchorLoss(margin, alpha)
            self.assertAllClose(loss(ids.astype(dtype), s), expected, rtol=1e-5)
        merged = np.float32(ids).astype("int64")
        self.assertNotAllClose(numpy_proxy_anchor(merged), expected, rtol=1e-2)

    @parameterized.named_parameters(("gather", True), ("per_replica", False))
    def test_mirrored_strategy(self, gather):
        # The replicas run interleaved in threads and gather the labels.
        strategy = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
        x = embeddings()
        ids = large_ids("2**31-1", "int64")
        half = len(ids) // 2
        with strategy.scope():
            loss = RegularizedLoss(
                losses.TripletLoss(margin=0.5),
                regularizers.SVMaxRegularizer(factor=0.5),
                gather=gather,
            )

        def rows(array):
            return strategy.experimental_distribute_values_from_function(
                lambda context: tf.constant(
                    array[
                        context.replica_id_in_sync_group * half : (
                            context.replica_id_in_sync_group + 1
                        )
                        * half
                    ]
                )
            )

        @tf.function
        def run(labels, x):
            return strategy.run(loss, args=(labels, x))

        values = strategy.experimental_local_results(run(rows(ids), rows(x)))
        if gather:  # The single-device loss on the global batch.
            expected = loss(SMALL, x)
        else:  # Keras scales each replica's loss by 1 / 2.
            expected = (
                sum(
                    loss(
                        SMALL[r * half : (r + 1) * half],
                        x[r * half : (r + 1) * half],
                    )
                    for r in range(2)
                )
                / 2
            )
        self.assertAllClose(sum(values), expected, rtol=1e-5, atol=1e-6)

    @parameterized.named_parameters(
        (case, name, dtype) for case, name, dtype in CASES
    )
    def test_fit_and_evaluate(self, name, dtype):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 6)).astype("float32")
        small = np.tile(SMALL, 2)
        ids = large_ids(name, dtype)
        ids = np.concatenate([ids, ids])

        def train(labels):
            model = keras.Sequential(
                [
                    keras.Input((6,)),
                    keras.layers.Dense(
                        4,
                        kernel_initializer=keras.initializers.GlorotUniform(0),
                    ),
                    keras.layers.UnitNormalization(),
                ]
            )
            model.compile(
                optimizer=keras.optimizers.SGD(0.1),
                loss=losses.ContrastiveLoss(margin=1.5),
            )
            history = model.fit(
                x, labels, batch_size=8, epochs=2, shuffle=False, verbose=0
            )
            evaluated = model.evaluate(x, labels, batch_size=8, verbose=0)
            return history.history["loss"], evaluated

        expected_history, expected = train(small)
        history, evaluated = train(ids)
        self.assertAllClose(history, expected_history, rtol=1e-6, atol=1e-7)
        self.assertAllClose(evaluated, expected, rtol=1e-6, atol=1e-7)
        merged_history, _ = train(float32_merged(ids))
        self.assertNotAllClose(merged_history, expected_history, atol=1e-3)
