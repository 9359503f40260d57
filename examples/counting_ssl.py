"""Self-supervised counting: a repulsion term against SVMax (paper App. B.3).

Representation counting (Noroozi et al., 2017) learns a network N that maps
an image to a non-negative "count" vector, with the equivariance that the
counts of an image equal the sum of the counts of its four tiles:

```python
tiles T_1..T_4 = the four quadrants of I              # 14 x 14 each
down(I) = I resized to the tile size                  # 2 x 2 average pool
D(I) = ||N(down(I)) - sum_i N(T_i)||^2
```

D alone has the trivial solution N(x) = 0. The SVMax paper (Appendix B.3,
Table 5) compares the problem-specific fix with the generic prior:

```python
Eq. 18 ("repulsion"): D(I) + max(0, m - ||N(down(Ihat)) - sum_i N(T_i)||^2)
Eq. 19 ("svmax"):     D(I) - lambda * s_mu(N(down(I)) over the batch)
("none"):             D(I)
```

with Ihat another image of the batch (the batch rolled by one), m = 10 as
the paper and SVMax unbounded on the raw (un-normalized) counts, as the
paper uses it in self-supervised learning. Each variant trains the same
network from the same seed (`CountingModel`, a `keras.Model` with a custom
`train_step`); then the network is frozen and its features of the test
images (`N(down(I))`, the 14 x 14 input the network was trained on) are
scored by a linear probe and a cosine k-NN on the digit labels
(`keras_featreg.evaluation.linear_probe`; where that module is missing, a
scikit-learn stand-in: standardized features + `LogisticRegression`, and a
cosine 20-NN majority vote). Reported per variant: probe and k-NN
accuracy of the count vector (the output) and of the penultimate layer,
s_mu of the L2-normalized test counts with its bounds [L, U], s_mu of the
raw counts and the mean ||N(x)||.

lambda = 1 by default: with the unbounded term on raw counts, s_mu grows
linearly with the scale of N while D grows quadratically, so lambda sets
the output scale; lambda = 10 (one seed, 6 epochs) reached
mean ||N(x)|| = 170 and a test D of 235, against 21 and 3.9 at lambda = 1,
for a similar probe accuracy (80.1% vs 82.0%). Note that the penultimate
layer of the collapsed ("none") network still probes well: its output
layer is what collapses (the counts are all 0, e.g. through dead ReLUs
or zero output weights), while the hidden layer still carries image
information a linear probe can read (on MNIST even untrained conv features
do); read the counts columns for the effect of the prior.

Default (offline, a few minutes on 2 CPU cores): MNIST-5k, 4,000 images to
train (labels unused) and 1,000 to test, d = 32, 6 epochs of batch 64,
Adam 1e-3, seeds 0, 1, 2.

    python examples/counting_ssl.py
    python examples/counting_ssl.py --seeds 0 1 2 --epochs 10 --factor 10

Outputs (in --output-dir): results.md, results.json, counting_ssl.png
(training curves of D and mean ||N(x)|| per variant).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg import data  # noqa: E402
from keras_featreg import ops  # noqa: E402
from keras_featreg.ops import mean_singular_value  # noqa: E402
from keras_featreg.ops import svmax_bounds  # noqa: E402

try:  # keras_featreg.evaluation.linear_probe, where it is installed
    from keras_featreg.evaluation.linear_probe import knn_accuracy
    from keras_featreg.evaluation.linear_probe import linear_probe_accuracy
except ImportError:  # a scikit-learn stand-in with the same outputs

    def linear_probe_accuracy(encoder, x_train, y_train, x_test, y_test, **_):
        """Standardized features, then scikit-learn logistic regression."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x_train)
        classifier = LogisticRegression(max_iter=1000)
        classifier.fit(scaler.transform(x_train), y_train)
        accuracy = classifier.score(scaler.transform(x_test), y_test)
        return {"test_accuracy": accuracy}

    def knn_accuracy(train_features, train_labels, test_features, test_labels):
        """Cosine 20-NN majority vote."""
        from sklearn.neighbors import KNeighborsClassifier

        classifier = KNeighborsClassifier(20, metric="cosine")
        classifier.fit(train_features, train_labels)
        return classifier.score(test_features, test_labels)


VARIANTS = ("repulsion", "svmax", "none")


def load_split(test_size: int = 1000, seed: int = 0):
    """MNIST-5k as float32 in [0, 1]: `((x_train, y_train), (x_test, y_test))`.

    A seeded random split; the train labels are used by the probes only.
    """
    images, labels = data.load_mnist_5k()
    order = np.random.default_rng(seed).permutation(len(images))
    images = images[order].astype("float32") / 255.0
    labels = labels[order].astype("int64")
    return (images[test_size:], labels[test_size:]), (
        images[:test_size],
        labels[:test_size],
    )


def tiles_and_downsampled(images):
    """The 4 quadrants `(4, b, h/2, w/2, c)` and the 2x-downsampled image."""
    height, width = images.shape[1] // 2, images.shape[2] // 2
    tiles = tf.stack(
        [
            images[:, :height, :width],
            images[:, :height, width:],
            images[:, height:, :width],
            images[:, height:, width:],
        ]
    )
    down = tf.nn.avg_pool2d(images, 2, 2, "VALID")
    return tiles, down


def build_counting_network(
    input_shape=(14, 14, 1), dim: int = 32, filters: int = 16, hidden: int = 128
) -> keras.Model:
    """conv-pool-conv-pool-Dense(hidden, relu) "features" -> Dense(d, relu)."""
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for i, width in enumerate((filters, 2 * filters)):
        x = keras.layers.Conv2D(
            width, 3, padding="same", activation="relu", name=f"conv{i}"
        )(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(hidden, activation="relu", name="features")(x)
    counts = keras.layers.Dense(dim, activation="relu", name="counts")(x)
    return keras.Model(inputs, counts, name="counting_network")


class CountingModel(keras.Model):
    """Trains a counting network N with Eq. 18, Eq. 19 or D alone."""

    def __init__(
        self,
        network: keras.Model,
        variant: str = "svmax",
        margin: float = 10.0,
        factor: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(
                f"`variant` must be one of {VARIANTS}. Received: "
                f"variant={variant!r}"
            )
        self.network = network
        self.variant = variant
        self.margin = float(margin)
        self.factor = float(factor)
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "equivariance", "repulsion", "s_mu", "norm")
        }

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.network(images, training=training)

    def compute_terms(self, images, training=False) -> dict:
        """The loss and its terms on a batch of full-size images."""
        tiles, down = tiles_and_downsampled(images)
        batch = tf.shape(images)[0]
        # One pass of N over the 5 b images: down(I) and the 4 tile stacks.
        stacked = tf.concat(
            [down, tf.reshape(tiles, (-1, *tiles.shape[2:]))], axis=0
        )
        counts = self.network(stacked, training=training)
        whole = counts[:batch]
        tile_sum = tf.reduce_sum(tf.reshape(counts[batch:], (4, batch, -1)), 0)
        equivariance = tf.reduce_mean(
            tf.reduce_sum(tf.square(whole - tile_sum), axis=-1)
        )
        other = tf.roll(whole, shift=1, axis=0)  # N(down(Ihat))
        repulsion = tf.reduce_mean(
            tf.nn.relu(
                self.margin
                - tf.reduce_sum(tf.square(other - tile_sum), axis=-1)
            )
        )
        # SVMax's unbounded penalty (Eq. 1) on the un-normalized counts.
        penalty, s_mu = ops.svmax_penalty(
            whole, self.factor, bounded=False, normalize=False
        )
        loss = equivariance
        if self.variant == "repulsion":
            loss = loss + repulsion
        elif self.variant == "svmax":
            loss = loss + penalty
        norm = tf.reduce_mean(tf.norm(whole, axis=-1))
        return {
            "loss": loss,
            "equivariance": equivariance,
            "repulsion": repulsion,
            "s_mu": s_mu,
            "norm": norm,
        }

    def train_step(self, batch):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        with tf.GradientTape() as tape:
            terms = self.compute_terms(images, training=True)
        variables = self.network.trainable_variables
        gradients = tape.gradient(terms["loss"], variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: t.result() for name, t in self.trackers.items()}


def features(encoder, images, batch_size: int = 256) -> np.ndarray:
    """Frozen features of `down(images)` (the network's own input size)."""
    down = tf.nn.avg_pool2d(images, 2, 2, "VALID").numpy()
    return encoder.predict(down, batch_size=batch_size, verbose=0)


def train_variant(
    variant: str,
    splits,
    seed: int = 0,
    epochs: int = 6,
    batch_size: int = 64,
    dim: int = 32,
    margin: float = 10.0,
    factor: float = 1.0,
    learning_rate: float = 1e-3,
    filters: int = 16,
    hidden: int = 128,
    probe_epochs: int = 100,
    verbose: int = 0,
) -> dict:
    """Trains one variant and scores its frozen features; returns a dict."""
    (x_train, y_train), (x_test, y_test) = splits
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    network = build_counting_network(
        (x_train.shape[1] // 2, x_train.shape[2] // 2, x_train.shape[3]),
        dim=dim,
        filters=filters,
        hidden=hidden,
    )
    model = CountingModel(network, variant, margin=margin, factor=factor)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    train = (
        tf.data.Dataset.from_tensor_slices(x_train)
        .shuffle(len(x_train), seed=seed)
        .batch(batch_size, drop_remainder=True)
    )
    start = time.perf_counter()
    history = model.fit(
        train, epochs=epochs, verbose=verbose, shuffle=False
    ).history
    seconds = time.perf_counter() - start
    result = {
        "variant": variant,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
    }
    for layer in ("counts", "features"):
        encoder = keras.Model(network.inputs, network.get_layer(layer).output)
        f_train = features(encoder, x_train)
        f_test = features(encoder, x_test)
        probe = linear_probe_accuracy(
            None, f_train, y_train, f_test, y_test, epochs=probe_epochs
        )
        result[f"{layer}_probe"] = float(probe["test_accuracy"])
        result[f"{layer}_knn"] = float(
            knn_accuracy(f_train, y_train, f_test, y_test)
        )
    counts = features(network, x_test).astype("float64")
    norms = np.linalg.norm(counts, axis=1)
    unit = counts / np.maximum(norms, 1e-12)[:, None]
    lower, upper = svmax_bounds(len(counts), counts.shape[1])
    result.update(
        mean_norm=float(norms.mean()),
        mean_singular_value=float(mean_singular_value(tf.constant(unit))),
        raw_mean_singular_value=float(mean_singular_value(tf.constant(counts))),
        n_test=len(counts),
        lower_bound=float(lower),
        upper_bound=float(upper),
        equivariance_test=float(
            model.compute_terms(tf.constant(x_test[:256]))["equivariance"]
        ),
    )
    return result


COLUMNS = (
    ("counts_probe", "probe acc (counts)", 100, ".1f"),
    ("counts_knn", "kNN acc (counts)", 100, ".1f"),
    ("features_probe", "probe acc (penult.)", 100, ".1f"),
    ("features_knn", "kNN acc (penult.)", 100, ".1f"),
    ("mean_singular_value", "s_mu (L2-norm.)", 1, ".3f"),
    ("raw_mean_singular_value", "s_mu (raw)", 1, ".3f"),
    ("mean_norm", "mean norm N(x)", 1, ".3f"),
    ("equivariance_test", "D (test)", 1, ".4f"),
)


def results_table(results) -> str:
    """Markdown table, one row per variant (mean +- std over seeds)."""
    header = ["Variant", "seeds"] + [title for _, title, _, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == variant]
        row = [variant, str(len(runs))]
        for key, _, scale, fmt in COLUMNS:
            values = scale * np.array([r[key] for r in runs])
            cell = format(values.mean(), fmt)
            if len(runs) > 1:
                cell += " ± " + format(values.std(), fmt)
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    first = results[0]
    lines.append(
        f"\ns_mu bounds of the test counts (N = {first['n_test']}): "
        f"L = {first['lower_bound']:.3f}, U = {first['upper_bound']:.3f}"
    )
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    keys = (
        ("equivariance", "D (train)"),
        ("norm", "mean ||N(x)|| (train)"),
        ("s_mu", "s_mu of raw counts (train)"),
    )
    for ax, (key, title) in zip(axes, keys, strict=True):
        for run in results:
            curve = run["history"][key]
            ax.plot(
                range(1, len(curve) + 1),
                curve,
                marker=".",
                label=f"{run['variant']} seed={run['seed']}",
            )
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("symlog", linthresh=1e-3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=32, help="d")
    parser.add_argument("--margin", type=float, default=10.0, help="m")
    parser.add_argument("--factor", type=float, default=1.0, help="lambda")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument(
        "--train-size", type=int, default=None, help="Default: the rest."
    )
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument(
        "--output-dir", default=os.path.join("runs", "counting_ssl")
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    (x_train, y_train), test = load_split(args.test_size)
    if args.train_size is not None:
        x_train, y_train = (
            x_train[: args.train_size],
            y_train[: args.train_size],
        )
    splits = ((x_train, y_train), test)
    print(
        f"MNIST-5k: {len(x_train)} train / {len(test[0])} test images, "
        f"d={args.dim}, b={args.batch_size}, epochs={args.epochs}, "
        f"m={args.margin:g}, lambda={args.factor:g}"
    )
    results = []
    for seed in args.seeds:
        for variant in args.variants:
            print(f"\n== {variant} / seed {seed}")
            run = train_variant(
                variant,
                splits,
                seed=seed,
                epochs=args.epochs,
                batch_size=args.batch_size,
                dim=args.dim,
                margin=args.margin,
                factor=args.factor,
                learning_rate=args.learning_rate,
                filters=args.filters,
                hidden=args.hidden,
                probe_epochs=args.probe_epochs,
                verbose=args.verbose,
            )
            print(
                f"   probe {100 * run['counts_probe']:.1f}%  "
                f"kNN {100 * run['counts_knn']:.1f}%  "
                f"s_mu {run['mean_singular_value']:.3f}  "
                f"||N(x)|| {run['mean_norm']:.3f}  ({run['train_seconds']} s)"
            )
            results.append(run)
    markdown = results_table(results)
    print("\n" + markdown)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(
        "wrote",
        plot(results, os.path.join(args.output_dir, "counting_ssl.png")),
    )
    return results


if __name__ == "__main__":
    main()
