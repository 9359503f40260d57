"""Helpers shared by the metric-loss tests: batches, gradients, fit smoke."""

import keras
import numpy as np
import tensorflow as tf

# Label sets for the brute-force comparisons: P x K, unbalanced, with a
# singleton class, shuffled order.
LABEL_SETS = {
    "pk": np.array([0, 0, 1, 1, 2, 2]),
    "unbalanced": np.array([3, 1, 3, 3, 1, 7, 7]),
    "singleton": np.array([0, 1, 1, 2, 0, 5]),
    "two_classes": np.array([1, 0, 0, 1, 1, 0, 1, 0]),
}


def random_embeddings(labels, dim=4, seed=0, normalize=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(labels), dim))
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype("float32")


def numpy_distance(u, v):
    return float(np.sqrt(np.sum((np.float64(u) - np.float64(v)) ** 2)))


def numpy_share(pair_losses, batch_size):
    """Spreads {(anchor, ...): loss} over anchors; mean = mean of losses."""
    out = np.zeros(batch_size)
    for key, value in pair_losses.items():
        out[key[0]] += value
    if pair_losses:
        out *= batch_size / len(pair_losses)
    return out


def value_and_gradient(fn, labels, embeddings):
    x = tf.Variable(embeddings)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(fn(labels, x))
    return value, tape.gradient(value, x)


def fit_smoke(test, loss, head=None, epochs=3):
    """Trains Dense -> UnitNormalization [-> head] on random P x K data.

    Returns the model and the per-epoch training losses, after checking
    they are finite and that `evaluate` matches the loss recomputed on
    the model's predictions.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = np.repeat(np.arange(8), 4)
    if head is None:  # a given head was built under the caller's seed
        keras.utils.set_random_seed(0)
    layers = [
        keras.Input((6,)),
        keras.layers.Dense(4),
        keras.layers.UnitNormalization(),
    ]
    model = keras.Sequential(layers + ([head] if head is not None else []))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    history = model.fit(
        x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0
    )
    losses = history.history["loss"]
    test.assertTrue(np.all(np.isfinite(losses)), losses)
    evaluated = model.evaluate(x, y, batch_size=32, verbose=0)
    direct = loss(y, model(x))
    test.assertAllClose(evaluated, direct, rtol=1e-5, atol=1e-6)
    return model, losses
