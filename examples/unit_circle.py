"""MNIST on the unit circle: how fast does SVMax spread the embedding?

The SVMax paper's Fig. 7 (Sec. 4.3): a tiny CNN embeds MNIST digits on the
2-D unit circle and is trained with the contrastive loss, alone
("vanilla") or plus the bounded SVMax regularizer. The paper's claim is
about *speed*: with SVMax the embedding spreads over the circle sooner.
This script follows the official `mnist_embedding.py` (github
`ahmdtaha/svmax`) and measures that speed.

Setup, as in the official code:
- all ten digits; Conv2D(32, 3, relu) -> Flatten -> Dense(128, relu) ->
  Dense(2) -> L2 normalization; Keras' default initialization;
- batches of 8 random classes x 4 images (class-major rows);
- the squared (Hadsell) contrastive loss on 16 *fixed* pairs per batch,
  half positive and half negative: the rows are reordered with the
  pattern [0, 1, 4, 3, 2, 5, 6, 7] per block of 8 and taken two by two
  with labels [1, 0, 0, 1]; `D = sqrt(|a - p|^2 + 1e-5)`, margin 1,
  `loss = mean(y * D^2 + (1 - y) * relu(1 - D)^2)`. Transcribed here from
  the official `ranking/contrastive.py`, since our `ContrastiveLoss`
  averages over all pairs of the batch;
- bounded SVMax (Eq. 4), lambda = 1, on the 32 x 2 batch: `exp((U - s_mu)
  / (U - L))` with `L = sqrt(32) / 2`, `U = 4`;
- plain SGD, learning rate 0.01, no momentum.

Differences: the data are the offline MNIST-5k (400 train and 100 test
images per digit) instead of the full MNIST, and we measure on all 1,000
test images instead of plotting 320; we run a few hundred steps, not 200
epochs, because the claim is about the first steps.

What is measured, at steps 0, 10, 25, 50, 100, 200 and 500 by default:
- the *95 % arc*: the shortest arc of the circle holding 95 % of the test
  points (360 degrees would be an even spread, near 0 a collapse);
- the *centroid arc*: 360 degrees minus the largest gap between the
  directions of the ten class centroids (how much of the circle the
  classes use);
- leave-one-out 1-NN accuracy, to see that spreading costs no accuracy;
- s_mu / U of the test embeddings, only to show the next point.

Why not s_mu: for unit rows in 2-D, s_mu depends only on the 2 x 2
second-moment matrix `E^T E`, which cannot see the sign of a row (x and -x
count the same). Every axially isotropic layout reaches the upper bound,
points spread evenly over a *half* circle included, so s_mu cannot tell a
half circle from a full one.

    python examples/unit_circle.py           # 5 seeds, ~3 minutes on 2 CPUs
    python examples/unit_circle.py --seeds 0 --steps 50 --eval-steps 0 50

Outputs in --output-dir: results.md and results.json (mean +/- std over
seeds), unit_circle_grid.png (rows: vanilla and SVMax, columns: steps;
first seed) and unit_circle_arcs.png (both arcs against steps).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

METHODS = ("vanilla", "svmax")


def add_arguments(parser):
    add = parser.add_argument
    steps = [0, 10, 25, 50, 100, 200, 500]
    add("--eval-steps", type=int, nargs="+", default=steps, help="measure at")
    add("--factor", type=float, default=1.0, help="SVMax lambda")
    add("--train-per-class", type=int, default=400, help="of 500 per digit")
    add("--test-per-class", type=int, default=100, help="taken first")


def parse_args(argv=None):
    return _common.parse_args(
        __doc__,
        argv,
        learning_rate=0.01,
        seeds=(0, 1, 2, 3, 4),
        steps=500,
        output_dir=os.path.join("runs", "unit_circle"),
        add_arguments=add_arguments,
    )


# The 16 fixed pairs of a batch of 8 classes x 4 (mnist_embedding.py).
_BLOCK = [0, 1, 4, 3, 2, 5, 6, 7]
PAIR_ORDER = [i + 8 * block for block in range(4) for i in _BLOCK]
PAIR_LABELS = [1.0, 0.0, 0.0, 1.0] * 4


def paired_contrastive_loss(embeddings, margin: float = 1.0):
    """The official squared contrastive loss on the batch's 16 fixed pairs.

    `embeddings`: `(32, dim)`, rows of 8 classes x 4 images, class-major.
    """
    import tensorflow as tf

    pairs = tf.reshape(tf.gather(embeddings, PAIR_ORDER), (16, 2, -1))
    squared = tf.reduce_sum(tf.square(pairs[:, 0] - pairs[:, 1]), -1)
    distance = tf.sqrt(squared + 1e-5)
    y = tf.constant(PAIR_LABELS, embeddings.dtype)
    push = tf.square(tf.nn.relu(margin - distance))
    return tf.reduce_mean(y * tf.square(distance) + (1.0 - y) * push)


def arc_95(embeddings, share: float = 0.95) -> float:
    """Degrees of the shortest arc holding `share` of the unit rows."""
    import numpy as np

    angles = np.sort(np.arctan2(embeddings[:, 1], embeddings[:, 0]))
    n = len(angles)
    k = int(np.ceil(share * n))
    ends = angles[(np.arange(n) + k - 1) % n]
    return float(np.degrees(np.min((ends - angles) % (2 * np.pi))))


def centroid_arc(embeddings, labels) -> float:
    """360 degrees minus the largest gap between class-centroid angles."""
    import numpy as np

    centroids = [embeddings[labels == c].mean(0) for c in np.unique(labels)]
    angles = np.sort([np.arctan2(y, x) for x, y in centroids])
    gaps = np.diff(np.append(angles, angles[0] + 2 * np.pi))
    return float(360.0 - np.degrees(gaps.max()))


def one_nn_accuracy(embeddings, labels) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy (Recall@1)."""
    import numpy as np

    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[distances.argmin(1)] == labels))


def run(method, seed, args, splits):
    """Trains one method with one seed; returns its records per eval step."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_featreg.regularizers import SVMaxRegularizer

    (x_train, y_train), (x_test, y_test) = splits
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(2),
            keras.layers.UnitNormalization(),
        ]
    )
    optimizer = keras.optimizers.SGD(args.learning_rate)
    svmax = SVMaxRegularizer(factor=args.factor, bounded=True)

    @tf.function
    def train_step(images):
        with tf.GradientTape() as tape:
            embeddings = model(images, training=True)
            loss = paired_contrastive_loss(embeddings)
            if method == "svmax":
                loss += svmax.stats(embeddings)["penalty"]
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)

    # Batches of 8 random classes x 4 random images each, class-major.
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y_train == c) for c in range(10)]
    records = []
    for step in range(args.steps + 1):
        if step in args.eval_steps:
            embeddings = np.float64(model(x_test, training=False))
            s_mu = np.linalg.svd(embeddings, compute_uv=False).mean()
            records.append(
                {
                    "step": step,
                    "arc_95": arc_95(embeddings),
                    "centroid_arc": centroid_arc(embeddings, y_test),
                    "one_nn": one_nn_accuracy(embeddings, y_test),
                    # s_mu over its upper bound sqrt(N / 2): 1 = isotropic.
                    "s_mu_ratio": float(s_mu / np.sqrt(len(embeddings) / 2)),
                    "embeddings": embeddings,
                }
            )
        if step < args.steps:
            classes = rng.choice(10, 8, replace=False)
            rows = [rng.choice(by_class[c], 4, replace=False) for c in classes]
            train_step(x_train[np.concatenate(rows)])
    return records


def load_split(test_per_class=100, train_per_class=400, seed=0):
    """MNIST-5k per digit: `test_per_class` to test, the next to train."""
    import numpy as np

    from keras_featreg.data import load_mnist_5k

    images, labels = load_mnist_5k()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(labels == digit))
        test.append(indices[:test_per_class])
        train.append(indices[test_per_class:][:train_per_class])
    train, test = np.concatenate(train), np.concatenate(test)
    x = images.astype("float32") / 255.0
    return (x[train], labels[train]), (x[test], labels[test])


def report(results, args) -> tuple[str, list]:
    """Mean +/- std over seeds per method and step, as markdown and rows."""
    rows = []
    for method in METHODS:
        for i, step in enumerate(sorted(args.eval_steps)):
            runs = [records[i] for records in results[method]]
            rows.append(
                [method, step]
                + [
                    _common.format_mean_std([r[key] for r in runs], digits)
                    for key, digits in (
                        ("arc_95", 1),
                        ("centroid_arc", 1),
                        ("one_nn", 3),
                        ("s_mu_ratio", 3),
                    )
                ]
            )
    header = ["method", "step", "95 % arc (deg)", "centroid arc (deg)"]
    header += ["1-NN", "s_mu / U"]
    text = (
        f"Unit circle, MNIST-5k, seeds {args.seeds} (mean +/- std), "
        f"SGD {args.learning_rate}, lambda {args.factor}, batch 8 x 4.\n\n"
        + _common.markdown_table(header, rows)
    )
    return text, rows


def plot(results, args, labels):
    panels = [  # Fig. 7, first seed
        [
            (f"{m}, step {r['step']}", r["embeddings"], labels)
            for r in results[m][0]
        ]
        for m in METHODS
    ]
    _common.scatter_grid(panels, args.output_dir, "unit_circle_grid.png")
    panels = []
    for key in ("arc_95", "centroid_arc"):
        lines = {
            m: (args.eval_steps, [[r[key] for r in rs] for rs in results[m]])
            for m in METHODS
        }
        panels.append((key, "degrees", lines))
    _common.curves(panels, args.output_dir, "unit_circle_arcs.png")


def main(argv=None):
    args = parse_args(argv)
    args.eval_steps = sorted(s for s in set(args.eval_steps) if s <= args.steps)
    splits = load_split(args.test_per_class, args.train_per_class)
    results = {method: [] for method in METHODS}
    for seed in args.seeds:
        for method in METHODS:
            start = time.perf_counter()
            results[method].append(run(method, seed, args, splits))
            print(f"{method} seed {seed}: {time.perf_counter() - start:.0f} s")
    text, rows = report(results, args)
    print(text)
    payload = {
        "args": vars(args),
        "rows": rows,
        "runs": {
            method: [
                [{k: v for k, v in r.items() if k != "embeddings"} for r in rs]
                for rs in runs
            ]
            for method, runs in results.items()
        },
    }
    _common.write_results(args.output_dir, text, payload)
    plot(results, args, splits[1][1])
    return results


if __name__ == "__main__":
    main()
