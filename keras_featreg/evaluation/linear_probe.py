"""Self-supervised evaluation: a linear probe and a k-NN on frozen features.

The two standard ways to score a self-supervised encoder (VICReg Sec. 4.1,
Wu et al. 2018, DINO): freeze it, compute the representation of every
labelled image once, then

- `linear_probe_accuracy`: train a linear softmax classifier on the train
  features and report its accuracy on the test features;
- `knn_accuracy`: classify each test feature by a vote of its k most
  cosine-similar train features (no training at all).

Labels are used here only, never to train the encoder. Keras and
TensorFlow are imported by the functions that use them (`encode`,
`linear_probe_accuracy`), not by this module: the k-NN is NumPy only.
"""

import numpy as np

from keras_featreg.evaluation.arrays import as_embeddings
from keras_featreg.evaluation.arrays import as_labels
from keras_featreg.evaluation.arrays import as_scaled_embeddings
from keras_featreg.evaluation.arrays import l2_normalize
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_positive

VOTES = ("weighted", "majority")


def encode(encoder, x, batch_size: int = 256) -> np.ndarray:
    """Features of `x` from a frozen encoder, as a float32 `(n, d)` array.

    Args:
        encoder: A Keras model/layer (run with `predict`, in inference mode)
            or any callable on a batch; `None` returns `x` itself.
        x: Array (or a `tf.data.Dataset` of input batches for a Keras
            model) of inputs.
        batch_size: Int >= 1, inference batch size. Defaults to `256`.

    Returns:
        A float32 array of shape `(num_samples, features)`, rank > 2
        outputs flattened.
    """
    import keras  # here, not at import: the k-NN needs no TensorFlow

    batch_size = check_int("batch_size", batch_size, minimum=1)
    if encoder is None:
        features = x
    elif isinstance(encoder, keras.Model):
        features = encoder.predict(x, batch_size=batch_size, verbose=0)
    elif callable(encoder):
        x = np.asarray(x)
        features = np.concatenate(
            [
                np.asarray(encoder(x[start : start + batch_size]))
                for start in range(0, len(x), batch_size)
            ]
        )
    else:
        raise TypeError(
            "`encoder` must be a Keras model, a callable or None. "
            f"Received: encoder={encoder!r}"
        )
    return as_embeddings(features, "features")


def _class_ids(y_train, y_test):
    """Maps labels to 0..C-1 by the train classes; unseen test labels: -1."""
    classes, train_ids = np.unique(y_train, return_inverse=True)
    position = np.searchsorted(classes, y_test)
    position = np.clip(position, 0, len(classes) - 1)
    test_ids = np.where(classes[position] == y_test, position, -1)
    return classes, train_ids.astype(np.int64), test_ids.astype(np.int64)


def linear_probe_accuracy(
    encoder,
    x_train,
    y_train,
    x_test,
    y_test,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-2,
    seed: int = 0,
    standardize: bool = True,
    encode_batch_size: int = 256,
) -> dict:
    """Accuracy of a linear softmax classifier on frozen encoder features.

    VICReg's linear evaluation without its image augmentation: the
    representations are computed once (the encoder in inference mode, no
    gradient reaches it), standardized with the train set's per-feature
    mean and std, and a `Dense(num_classes, activation="softmax")` is
    trained on them with Adam and sparse categorical cross-entropy:

    ```python
    f = encoder(x)                                    # frozen, computed once
    f = (f - mean(f_train)) / std(f_train)            # standardize=True
    p(y | x) = softmax(f W + b)                       # trained with Adam
    accuracy = mean(argmax(p(y | x_test)) == y_test)
    ```

    Why standardize: a linear classifier can represent the same decisions
    on any affine rescaling of the features, but a fixed Adam budget cannot
    reach them equally fast when feature scales differ by orders of
    magnitude (a random encoder against a trained one, a shrunken
    embedding). Standardizing makes the probe measure what the features
    encode, not their scale. Features constant over the train set (std 0)
    are centred and left at 0. Why Keras rather than scikit-learn's
    `LogisticRegression`: one dependency less, and the probe runs on the
    accelerator for large feature sets; on small problems both reach the
    same accuracy (see the tests).

    Deterministic for a given `seed` (the initializer and the shuffling
    order are seeded; the global random state is not touched). Labels may
    be any integers or strings; the classes are those of `y_train`, and a
    test label not among them counts as a miss.

    Args:
        encoder: A Keras model (or callable) mapping inputs to
            `(batch, features)`, or `None` when `x_train`/`x_test` already
            are features.
        x_train: Training inputs (or features).
        y_train: Training labels, shape `(n_train,)`.
        x_test: Test inputs (or features).
        y_test: Test labels, shape `(n_test,)`.
        epochs: Int >= 1, passes over the train features. Defaults to
            `100`.
        batch_size: Int >= 1, the classifier's batch size. Defaults to
            `256`.
        learning_rate: Float > 0, Adam's learning rate (the features are
            standardized, so one rate fits most problems). Defaults to
            `1e-2`.
        seed: Int, seeds the initializer and the shuffling. Defaults to
            `0`.
        standardize: Bool, standardize the features with the train
            statistics. Defaults to `True`.
        encode_batch_size: Int >= 1, batch size to compute the features.
            Defaults to `256`.

    Returns:
        Dict of Python floats: `"train_accuracy"` and `"test_accuracy"`
        (fractions in [0, 1]).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_featreg
    >>> rng = np.random.default_rng(0)
    >>> y_train, y_test = np.arange(256) % 2, np.arange(128) % 2  # 2 classes
    >>> x_train = rng.normal(size=(256, 8)) + 4.0 * y_train[:, None]
    >>> x_test = rng.normal(size=(128, 8)) + 4.0 * y_test[:, None]
    >>> encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    >>> scores = keras_featreg.evaluation.linear_probe_accuracy(
    ...     encoder, x_train, y_train, x_test, y_test, epochs=50)
    >>> scores["test_accuracy"] > 0.9
    True

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Sec. 4.1.
    """
    import keras  # here, not at import: the k-NN needs no TensorFlow
    import tensorflow as tf

    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    learning_rate = check_positive("learning_rate", learning_rate)
    seed = check_int("seed", seed)
    standardize = check_bool("standardize", standardize)
    train = encode(encoder, x_train, encode_batch_size)
    test = encode(encoder, x_test, encode_batch_size)
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            "The train and test features must have the same size. "
            f"Received: train features {train.shape}, test {test.shape}"
        )
    y_train = as_labels(y_train, len(train), "y_train")
    y_test = as_labels(y_test, len(test), "y_test")
    classes, train_ids, test_ids = _class_ids(y_train, y_test)
    if standardize:
        mean = train.astype(np.float64).mean(axis=0)
        std = train.astype(np.float64).std(axis=0)
        std = np.where(std > 0, std, 1.0)
        train = ((train - mean) / std).astype(np.float32)
        test = ((test - mean) / std).astype(np.float32)
    classifier = keras.Sequential(
        [
            keras.Input((train.shape[1],)),
            keras.layers.Dense(
                len(classes),
                activation="softmax",
                kernel_initializer=keras.initializers.GlorotUniform(seed),
                name="linear_probe",
            ),
        ]
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((train, train_ids))
        .shuffle(len(train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    classifier.fit(dataset, epochs=epochs, verbose=0)

    kernel, bias = classifier.get_layer("linear_probe").get_weights()

    def accuracy(features, ids):
        logits = features @ kernel + bias  # softmax keeps the argmax
        return float(np.mean(np.argmax(logits, axis=1) == ids))

    return {
        "train_accuracy": accuracy(train, train_ids),
        "test_accuracy": accuracy(test, test_ids),
    }


def knn_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> float:
    """Accuracy of a cosine k-nearest-neighbour classifier on features.

    The k-NN evaluation of self-supervised learning (Wu et al. 2018; DINO,
    solo-learn): each test feature is compared by cosine similarity with
    every train feature, and its `k` most similar train samples vote:

    ```python
    s = l2_normalize(test) @ l2_normalize(train).T     # cosine similarity
    neighbours = top_k(s, k)                           # per test sample
    score[c] = sum_{j in neighbours, y_j = c} exp(s_j / temperature)
                                                       # vote="weighted"
    score[c] = count_{j in neighbours} [y_j = c]       # vote="majority"
    prediction = argmax_c score[c]
    ```

    Majority-vote ties go to the tied class with the larger summed
    similarity, then to the smaller label. All-zero features have
    similarity 0 with everything. Features of any scale (float64 1e-25 or
    1e25) are normalized exactly (each row is first multiplied by a power
    of two). Computed in float32 in blocks of
    `chunk_size` test samples, so the `(n_test, n_train)` similarity matrix
    is never held whole. Ties in similarity at the k-th place are broken
    arbitrarily.

    Args:
        train_features: Float array `(n_train, d)`.
        train_labels: Labels `(n_train,)` (integers or strings).
        test_features: Float array `(n_test, d)`.
        test_labels: Labels `(n_test,)`.
        k: Int in [1, n_train], the number of neighbours. Defaults to `20`.
        vote: `"weighted"` (exp(s / temperature) weights, the InstDisc and
            DINO rule) or `"majority"` (one vote each). Defaults to
            `"weighted"`.
        temperature: Float > 0, for the weighted vote. Defaults to `0.07`.
        chunk_size: Int >= 1, test samples per block. Defaults to `1024`.

    Returns:
        The accuracy, a Python float in [0, 1].

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> rng = np.random.default_rng(0)
    >>> y_train, y_test = np.arange(200) % 2, np.arange(50) % 2
    >>> centers = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> train_features = centers[y_train] + 0.1 * rng.normal(size=(200, 2))
    >>> test_features = centers[y_test] + 0.1 * rng.normal(size=(50, 2))
    >>> accuracy = keras_featreg.evaluation.knn_accuracy(
    ...     train_features, y_train, test_features, y_test, k=20)
    >>> accuracy
    1.0

    Reference:
    - [Wu et al., 2018](https://arxiv.org/abs/1805.01978), Sec. 3.4.
    - [Caron et al., 2021](https://arxiv.org/abs/2104.14294), Sec. 4.1.
    """
    # Cosine similarity ignores the scale: bring each set to scale ~1.
    train, _ = as_scaled_embeddings(train_features, "train_features")
    test, _ = as_scaled_embeddings(test_features, "test_features")
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            "`train_features` and `test_features` must have the same number "
            f"of features. Received: train_features.shape={train.shape}, "
            f"test_features.shape={test.shape}"
        )
    train_labels = as_labels(train_labels, len(train), "train_labels")
    test_labels = as_labels(test_labels, len(test), "test_labels")
    k = check_int("k", k, minimum=1)
    if k > len(train):
        raise ValueError(
            f"`k` must be <= the number of train samples ({len(train)}). "
            f"Received: k={k}"
        )
    vote = check_choice("vote", vote, VOTES)
    temperature = check_positive("temperature", temperature)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    classes, train_ids, test_ids = _class_ids(train_labels, test_labels)
    num_classes = len(classes)
    train = l2_normalize(train)
    test = l2_normalize(test)
    correct = 0
    for start in range(0, len(test), chunk_size):
        similarity = test[start : start + chunk_size] @ train.T
        if k < len(train):
            top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(len(train)), similarity.shape)
        top_similarity = np.take_along_axis(similarity, top, axis=1).astype(
            np.float64
        )
        neighbour_ids = train_ids[top]
        rows = np.repeat(np.arange(len(top)), k)
        summed = np.zeros((len(top), num_classes))
        np.add.at(summed, (rows, neighbour_ids.ravel()), top_similarity.ravel())
        if vote == "weighted":
            # exp((s - max s) / T): the same argmax, no overflow.
            shifted = top_similarity - top_similarity.max(axis=1, keepdims=True)
            scores = np.zeros((len(top), num_classes))
            np.add.at(
                scores,
                (rows, neighbour_ids.ravel()),
                np.exp(shifted / temperature).ravel(),
            )
        else:
            counts = np.zeros((len(top), num_classes))
            np.add.at(counts, (rows, neighbour_ids.ravel()), 1.0)
            # Ties in count: the larger summed similarity (similarities are
            # in [-1, 1], so k * 2 < 2k + 1 keeps counts first).
            scores = counts * (2.0 * k + 1.0) + summed
        prediction = np.argmax(scores, axis=1)  # first max: smaller label
        correct += int(np.sum(prediction == test_ids[start : start + len(top)]))
    return correct / len(test)
