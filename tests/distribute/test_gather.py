"""gather_batch and the gradients of gathered losses on each replica.

The bug class (lightly #1528/#1977): a gather whose backward pass hands each
replica only its own replica's upstream gradient, or a loss not scaled by
1 / replicas, gives gradients off by the number of replicas. Here each
replica's gradient with respect to its own rows must equal those rows of the
single-device gradient on the global batch, and the all-reduced weight
gradient (what the optimizer applies) the single-device weight gradient.
"""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import distribute
from keras_featreg import losses
from keras_featreg import regularizers
from keras_featreg.losses.regularized import RegularizedLoss
from tests import helpers as testing

GLOBAL_BATCH = 16
REPLICAS = 2


def mirrored():
    return distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])


def per_replica(strategy, array, bounds):
    """Distributes rows `bounds[r]:bounds[r + 1]` of `array` to replica r."""

    def value_fn(context):
        r = context.replica_id_in_sync_group
        return tf.constant(array[bounds[r] : bounds[r + 1]])

    return strategy.experimental_distribute_values_from_function(value_fn)


def data(seed=0):
    rng = np.random.default_rng(seed)
    x_a = rng.normal(size=(GLOBAL_BATCH, 6)).astype("float32")
    x_b = (x_a + 0.3 * rng.normal(size=x_a.shape)).astype("float32")
    labels = rng.permutation(np.arange(GLOBAL_BATCH) % 4).astype("float32")
    kernel = rng.normal(size=(6, 5)).astype("float32")
    return x_a, x_b, labels, kernel


def two_view_loss(loss, kernel, x_a, x_b, labels):
    del labels
    z_a = tf.matmul(x_a, kernel)
    z_b = tf.matmul(x_b, kernel)
    return loss(z_a, z_b), z_a


def metric_loss(loss, kernel, x_a, x_b, labels):
    del x_b
    z = tf.matmul(x_a, kernel)
    return loss(labels, z), z


CASES = {
    "vicreg": (lambda: losses.VICRegLoss(), two_view_loss),
    "invariance_svmax": (
        lambda: losses.InvarianceSVMaxLoss(factor=2.0),
        two_view_loss,
    ),
    "triplet_svmax": (
        lambda: RegularizedLoss(
            losses.TripletLoss(margin=0.5),
            regularizers.SVMaxRegularizer(factor=2.0),
        ),
        metric_loss,
    ),
}


def single_device(case):
    """Loss, weight gradient and row gradient on the global batch."""
    make_loss, forward = CASES[case]
    x_a, x_b, labels, kernel = data()
    kernel = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        value, z = forward(make_loss(), kernel, x_a, x_b, labels)
    weight_gradient, row_gradient = tape.gradient(value, [kernel, z])
    return value, weight_gradient, row_gradient


def replicated(case, strategy, bounds, scale=True):
    """Per-replica loss, weight gradient and row gradient."""
    make_loss, forward = CASES[case]
    x_a, x_b, labels, kernel = data()
    with strategy.scope():
        kernel = tf.Variable(kernel)
        loss = make_loss()
    inputs = [per_replica(strategy, v, bounds) for v in (x_a, x_b, labels)]

    def step(x_a, x_b, labels):
        with tf.GradientTape() as tape:
            z_a = tf.matmul(x_a, kernel)
            if forward is two_view_loss:
                z_b = tf.matmul(x_b, kernel)
                if scale:
                    value = loss(z_a, z_b)
                else:  # the bug: an unscaled mean of the per-sample values
                    value = tf.reduce_mean(loss.call(z_a, z_b))
            else:
                value = loss(labels, z_a)
        gradients = tape.gradient(value, [kernel, z_a])
        return value, gradients[0], gradients[1]

    @tf.function
    def run(*inputs):
        return strategy.run(step, args=inputs)

    values, weights, rows = run(*inputs)
    local = strategy.experimental_local_results
    return local(values), local(weights), local(rows)


class GatherBatchTest(testing.TestCase):
    def test_identity_without_replicas(self):
        x = tf.reshape(tf.range(6.0), (3, 2))
        self.assertIs(distribute.gather_batch(x), x)
        self.assertIs(distribute.local_rows(x, 3), x)
        self.assertEqual(int(distribute.replica_offset(3)), 0)
        self.assertFalse(distribute.in_replica_context())
        strategy = mirrored()
        with strategy.scope():  # cross-replica context
            self.assertIs(distribute.gather_batch(x), x)
            self.assertEqual(distribute.num_replicas_in_sync(), REPLICAS)

    def test_gathers_in_replica_order_with_uneven_batches(self):
        strategy = mirrored()
        x = np.arange(10, dtype="float32").reshape(5, 2)
        labels = np.arange(5, dtype="int32")
        bounds = [0, 3, 5]

        @tf.function
        def step(x, labels):
            gathered, gathered_labels = distribute.gather_batch((x, labels))
            size = tf.shape(x)[0]
            return (
                gathered,
                gathered_labels,
                distribute.replica_offset(size),
                distribute.local_rows(gathered * 10.0, size),
            )

        outputs = strategy.run(
            step,
            args=(
                per_replica(strategy, x, bounds),
                per_replica(strategy, labels, bounds),
            ),
        )
        local = strategy.experimental_local_results
        for r in range(REPLICAS):
            self.assertAllClose(local(outputs[0])[r], x)
            self.assertAllEqual(local(outputs[1])[r], labels)
            self.assertEqual(int(local(outputs[2])[r]), bounds[r])
            self.assertAllClose(
                local(outputs[3])[r], 10 * x[bounds[r] : bounds[r + 1]]
            )


class GatheredGradientTest(testing.TestCase):
    @parameterized.named_parameters((name, name) for name in CASES)
    def test_each_replica_gets_its_single_device_gradient(self, case):
        value, weight_gradient, row_gradient = single_device(case)
        bounds = [0, GLOBAL_BATCH // 2, GLOBAL_BATCH]
        values, weights, rows = replicated(case, mirrored(), bounds)
        # Keras scales each replica's loss by 1 / R: the sum is the loss.
        self.assertAllClose(sum(values), value, rtol=1e-5, atol=1e-6)
        for r in range(REPLICAS):
            self.assertAllClose(
                rows[r],
                row_gradient[bounds[r] : bounds[r + 1]],
                rtol=1e-4,
                atol=1e-6,
            )
        # The optimizer applies the sum of the replicas' weight gradients.
        self.assertAllClose(sum(weights), weight_gradient, rtol=1e-4, atol=1e-6)

    def test_unscaled_loss_is_off_by_the_replica_count(self):
        # The check above detects the bug class: without the 1 / R scaling
        # the gathered (variance, covariance) part counts R times.
        loss = losses.VICRegLoss(invariance_weight=0.0)
        CASES["vicreg_spread"] = (lambda: loss, two_view_loss)
        try:
            _, weight_gradient, _ = single_device("vicreg_spread")
            bounds = [0, GLOBAL_BATCH // 2, GLOBAL_BATCH]
            _, weights, _ = replicated(
                "vicreg_spread", mirrored(), bounds, scale=False
            )
        finally:
            del CASES["vicreg_spread"]
        self.assertAllClose(
            sum(weights), REPLICAS * weight_gradient, rtol=1e-4, atol=1e-6
        )
        self.assertNotAllClose(sum(weights), weight_gradient, rtol=1e-2)
