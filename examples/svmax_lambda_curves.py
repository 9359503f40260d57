"""s_mu during training for several SVMax weights (paper Fig. 3 left).

The metric-learning setup of `examples/metric_learning.py` (small CNN ->
Dense(d) -> L2 normalization, contrastive loss, P x K batches, SGD with
momentum, the learning rate held for K/2 iterations then decayed
polynomially) trained with the bounded SVMax regularizer on the normalized
embedding at lambda in {0, 1e-4, 1e-1}:

```python
loss = contrastive(y, e) + lambda * exp((U - s_mu(e)) / (U - L))
```

`keras_featreg.callbacks.CollapseMonitor` measures s_mu of a fixed batch
of test images (unseen classes) at the end of every epoch; the script
plots the curves with the bounds L and U of that batch as horizontal lines
(the paper's Fig. 3 left: s_mu stays near L with a tiny lambda and climbs
towards U with a large one) and prints a table of the final s_mu and the
test Recall@1.

Default (offline, a few minutes on 2 CPU cores): MNIST-5k, digits 0-4 to
train and 5-9 to test, b = 120 (P = 5 x K = 24), d = 128, K = 600
iterations in 20 epochs, lr = 0.01, a 512-image monitor batch.

    python examples/svmax_lambda_curves.py
    python examples/svmax_lambda_curves.py --factors 0 1e-4 1e-2 1e-1 1 \
        --iterations 1000 --epochs 20

Outputs (in --output-dir): results.md, results.json and
svmax_lambda_curves.png.
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
from keras_featreg import evaluation  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import regularizers  # noqa: E402
from keras_featreg.schedules import ConstantThenPolynomialDecay  # noqa: E402

FACTORS = (0.0, 1e-4, 1e-1)


def load_data():
    """MNIST-5k zero-shot split: digits 0-4 train, 5-9 test (uint8)."""
    images, labels = data.load_mnist_5k()
    return data.zero_shot_split(images, labels)


def train_one(
    factor: float,
    splits,
    p: int = 5,
    k: int = 24,
    dim: int = 128,
    iterations: int = 600,
    epochs: int = 20,
    learning_rate: float = 0.01,
    margin: float = 1.0,
    monitor_size: int = 512,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """Trains one lambda; returns the s_mu curve, final s_mu and R@1."""
    (x_train, y_train), (x_test, y_test) = splits
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    regularizer = (
        regularizers.SVMaxRegularizer(factor=factor, bounded=True)
        if factor > 0
        else None
    )
    model = models.build_embedding_model(
        tuple(x_train.shape[1:]),
        backbone="small_cnn",
        embedding_dim=dim,
        regularizer=regularizer,
    )
    schedule = ConstantThenPolynomialDecay(
        learning_rate, total_steps=iterations
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
        loss=losses.ContrastiveLoss(margin=margin),
    )
    # A fixed monitor batch, the same for every lambda (seeded choice).
    pick = np.random.default_rng(seed).permutation(len(x_test))[:monitor_size]
    monitor_batch = x_test[np.sort(pick)]
    monitor = callbacks.CollapseMonitor(monitor_batch)
    # Epoch "0": the same report as the monitor's, before training.
    initial = evaluation.embedding_collapse_report(
        model.predict(monitor_batch, batch_size=256, verbose=0)
    )
    train = data.pk_dataset(x_train, y_train, p=p, k=k, seed=seed)
    epochs = max(1, min(epochs, iterations))
    start = time.perf_counter()
    model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=iterations // epochs,
        callbacks=[monitor],
        verbose=verbose,
        shuffle=False,
    )
    seconds = time.perf_counter() - start
    embeddings = model.predict(x_test, batch_size=256, verbose=0)
    recall = evaluation.recall_at_k(embeddings, y_test, k=(1,))
    curve = [initial["mean_singular_value"]] + [
        float(entry["mean_singular_value"]) for entry in monitor.history
    ]
    return {
        "factor": factor,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "mean_singular_value_curve": [float(v) for v in curve],
        "final_mean_singular_value": float(curve[-1]),
        "lower_bound": float(initial["lower_bound"]),
        "upper_bound": float(initial["upper_bound"]),
        "recall_at_1": float(recall[1]),
        "finite": bool(np.isfinite(embeddings).all()),
    }


def results_table(results) -> str:
    lines = [
        "| lambda | final s_mu | L | U | R@1 (%) | train s |",
        "|---|---|---|---|---|---|",
    ]
    for run in results:
        lines.append(
            f"| {run['factor']:g} | {run['final_mean_singular_value']:.3f} "
            f"| {run['lower_bound']:.3f} | {run['upper_bound']:.3f} "
            f"| {100 * run['recall_at_1']:.2f} | {run['train_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    styles = ("-", "--", "-.", ":")
    for i, run in enumerate(results):
        curve = run["mean_singular_value_curve"]
        ax.plot(
            range(len(curve)),
            curve,
            marker=".",
            ls=styles[i % len(styles)],
            lw=2.5 - 0.5 * (i % 3),  # overlapping curves stay visible
            label=f"λ = {run['factor']:g}",
        )
    ax.axhline(
        results[0]["upper_bound"], color="red", ls="--", label="upper bound U"
    )
    ax.axhline(
        results[0]["lower_bound"], color="black", ls=":", label="lower bound L"
    )
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("s_mu of a fixed test batch")
    ax.set_title("Bounded SVMax + contrastive, MNIST-5k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--factors", nargs="+", type=float, default=list(FACTORS)
    )
    parser.add_argument("--p", type=int, default=5)
    parser.add_argument("--k", type=int, default=24)
    parser.add_argument("--dim", type=int, default=128, help="d")
    parser.add_argument("--iterations", type=int, default=600, help="K")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--monitor-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument(
        "--output-dir", default=os.path.join("runs", "svmax_lambda_curves")
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    splits = load_data()
    print(
        f"MNIST-5k zero-shot: {len(splits[0][1])} train / "
        f"{len(splits[1][1])} test images; b={args.p * args.k}, "
        f"d={args.dim}, K={args.iterations}, epochs={args.epochs}"
    )
    results = []
    for factor in args.factors:
        print(f"\n== lambda = {factor:g}")
        run = train_one(
            factor,
            splits,
            p=args.p,
            k=args.k,
            dim=args.dim,
            iterations=args.iterations,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            monitor_size=args.monitor_size,
            seed=args.seed,
            verbose=args.verbose,
        )
        print(
            f"   s_mu {run['final_mean_singular_value']:.3f} in "
            f"[{run['lower_bound']:.3f}, {run['upper_bound']:.3f}]  "
            f"R@1 {100 * run['recall_at_1']:.2f}  ({run['train_seconds']} s)"
        )
        results.append(run)
    markdown = results_table(results)
    print("\n" + markdown)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    path = plot(
        results, os.path.join(args.output_dir, "svmax_lambda_curves.png")
    )
    print("wrote", path)
    return results


if __name__ == "__main__":
    main()
