"""s_mu while training Proxy-Anchor with SVMax (SVMax paper, Fig. 3 left).

**What the paper shows.** Taha et al. (2021), Sec. 4.1, Fig. 3: the
Proxy-Anchor loss (Kim et al. 2020) on Stanford Online Products (11,318
training classes), an ImageNet-pretrained Inception-BN, b = d = 512 (so
the bounds of s_mu are [L, U] = [0.044, 1]), 60 epochs with the learning
rate decayed every 20, the bounded SVMax regularizer at lambda in
{0, 1e-4, 1e-1}, five runs each: mean s_mu as a line, its std as a band
(left) and Recall@1 (right). The text: vanilla Proxy-Anchor (lambda = 0)
already maximizes s_mu; lambda = 0.1 regularizes the embedding and raises
s_mu at a 0.02 % Recall@1 cost; lambda = 1e-4, the recommended value,
raises s_mu while improving Recall@1. It does not say on which batch s_mu
is measured; its bounds are those of a 512 x 512 mini-batch.

**Our setup**, the paper's loss and optimizer at MNIST scale:
- offline MNIST-5k, zero-shot: digits 0-4 (2,500 images) train, 5-9
  (2,500) test, as SOP's disjoint train and test classes;
- `models.build_embedding_model` (a small CNN from scratch -> Dense(d) ->
  L2 normalization) -> bounded SVMax on the normalized embedding (Eq. 4,
  `lambda * exp((U - s_mu) / (U - L))`) -> `layers.ProxyAnchor` (one proxy
  per class) -> `losses.ProxyAnchorLoss` (margin 0.1, alpha 32);
- b = d = 128, random batches (Proxy-Anchor's default sampler), so
  [L, U] = [0.088, 1];
- the official Proxy-Anchor recipe: AdamW, weight decay 1e-4, gradients
  clipped at 10 by value, the proxies at 100x the learning rate
  (`optimizers.LearningRateMultiplier`), the rate multiplied by 0.25 after
  1/3 and 2/3 of training (SOP: every 20 of 60 epochs);
- s_mu of a fixed batch of b test images (unseen digits) and of b train
  images after every epoch, then Recall@1 on the whole test set; seeds
  0, 1, 2 by default (the paper: five runs).

Differences: 5 training classes instead of 11,318 (five proxies can pull
the training embedding towards five directions, so vanilla Proxy-Anchor
need not raise s_mu here), a small CNN trained from scratch (hence lr 1e-3,
not 1e-4 or 6e-4 for a pretrained network), no warm-up epoch, d = 128, 24
short epochs (456 steps).

    python examples/svmax_lambda_curves.py     # 3 seeds, ~5 min on 2 cores
    python examples/svmax_lambda_curves.py --seeds 0 --steps 190

Outputs in --output-dir: results.md and results.json (mean +/- std over
seeds) and svmax_lambda_curves.png (s_mu against epochs, bands = std).
Measured numbers: docs/svmax_lambda_curves_results.md.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

FACTORS = (0.0, 1e-4, 0.1)
BATCHES = ("test", "train")  # the fixed batches whose s_mu is tracked


def add_arguments(parser):
    add = parser.add_argument
    add(
        "--factors",
        type=float,
        nargs="+",
        default=list(FACTORS),
        help="SVMax λ values",
    )
    add("--dim", type=int, default=128, help="embedding dimension d")
    add("--batch-size", type=int, default=128, help="b; the paper: b = d")
    add(
        "--proxy-lr-multiplier",
        type=float,
        default=100.0,
        help="proxies' lr factor",
    )
    add("--weight-decay", type=float, default=1e-4, help="AdamW's")
    add("--decay-gamma", type=float, default=0.25, help="at 1/3 and 2/3")
    add("--steps-per-epoch", type=int, default=None, help="default 2500 // b")


def parse_args(argv=None):
    return _common.parse_args(
        __doc__,
        argv,
        learning_rate=1e-3,
        seeds=(0, 1, 2),
        steps=456,  # 24 epochs of 19 batches of 128
        output_dir=os.path.join("runs", "svmax_lambda_curves"),
        add_arguments=add_arguments,
    )


# ## Data: a zero-shot split and two fixed monitor batches


def load_data(batch_size):
    """MNIST-5k, digits 0-4 train and 5-9 test, plus fixed b-image batches."""
    import numpy as np

    from keras_featreg import data

    (x_train, y_train), (x_test, y_test) = splits = data.zero_shot_split(
        *data.load_mnist_5k()
    )
    rng = np.random.default_rng(0)  # the same batches for every run
    fixed = {
        "test": x_test[np.sort(rng.permutation(len(x_test))[:batch_size])],
        "train": x_train[np.sort(rng.permutation(len(x_train))[:batch_size])],
    }
    return splits, fixed


# ## Model and optimizer: Proxy-Anchor with the proxies at 100x the rate


def build(factor, num_classes, args, steps):
    """The embedding network, the training model and its optimizer."""
    import keras

    from keras_featreg import layers
    from keras_featreg import models
    from keras_featreg import optimizers
    from keras_featreg import regularizers

    svmax = regularizers.SVMaxRegularizer(factor, bounded=True)
    svmax = svmax if factor > 0 else None  # lambda = 0: no SVD at all
    embedder = models.build_embedding_model(
        (28, 28, 1), embedding_dim=args.dim, regularizer=svmax
    )
    proxies = layers.ProxyAnchor(num_classes, name="proxy_anchor")
    trainer = keras.Model(embedder.input, proxies(embedder.output))
    # PyTorch's StepLR: the rate times gamma after 1/3 and 2/3 of the steps.
    lr = args.learning_rate
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [max(1, steps // 3), max(2, 2 * steps // 3)],
        [lr, lr * args.decay_gamma, lr * args.decay_gamma**2],
    )
    adamw = keras.optimizers.AdamW(
        schedule, weight_decay=args.weight_decay, clipvalue=10.0
    )
    # The weight "proxy_anchor/proxies" gets its own AdamW at 100x the rate.
    optimizer = optimizers.LearningRateMultiplier(
        adamw, {"proxies": args.proxy_lr_multiplier}
    )
    return embedder, trainer, optimizer


# ## Training one lambda and one seed


def run(factor, seed, args, splits, fixed):
    """Trains; returns the s_mu curves of the fixed batches and R@1."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_featreg import callbacks
    from keras_featreg import evaluation
    from keras_featreg import losses

    (x_train, y_train), (x_test, y_test) = splits
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    per_epoch = args.steps_per_epoch or len(x_train) // args.batch_size
    per_epoch = min(per_epoch, args.steps)
    epochs = args.steps // per_epoch
    num_classes = int(y_train.max()) + 1
    embedder, trainer, optimizer = build(
        factor, num_classes, args, epochs * per_epoch
    )
    trainer.compile(optimizer, losses.ProxyAnchorLoss(margin=0.1, alpha=32))
    monitors = {
        name: callbacks.CollapseMonitor(
            x, embedding_model=embedder, prefix=f"{name}_"
        )
        for name, x in fixed.items()
    }
    initial = {name: m.measure() for name, m in monitors.items()}
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed)  # reshuffled every pass
        .batch(args.batch_size, drop_remainder=True)
        .repeat()
    )
    start = time.perf_counter()
    trainer.fit(
        train,
        epochs=epochs,
        steps_per_epoch=per_epoch,
        callbacks=list(monitors.values()),
        shuffle=False,  # the dataset shuffles
        verbose=0,
    )
    seconds = time.perf_counter() - start
    embeddings = embedder.predict(x_test, batch_size=256, verbose=0)
    run = {"factor": factor, "seed": seed, "train_seconds": seconds}
    for name, monitor in monitors.items():
        reports = [initial[name]] + monitor.history
        run[f"s_mu_{name}"] = [r["mean_singular_value"] for r in reports]
    run["lower_bound"] = initial["test"]["lower_bound"]
    run["upper_bound"] = initial["test"]["upper_bound"]
    run["recall_at_1"] = evaluation.recall_at_k(embeddings, y_test, k=1)[1]
    run["finite"] = bool(np.isfinite(embeddings).all())
    return run


# ## Table and figure: mean +/- std over seeds


def report(results, args) -> tuple[str, list]:
    rows = []
    for factor in args.factors:
        runs = [r for r in results if r["factor"] == factor]
        cells = [
            _common.format_mean_std([r[f"s_mu_{name}"][i] for r in runs], 3)
            for name, i in (("test", 0), ("test", -1), ("train", -1))
        ]
        recall = [100 * r["recall_at_1"] for r in runs]
        seconds = [r["train_seconds"] for r in runs]
        rows.append([f"{factor:g}", *cells, _common.format_mean_std(recall)])
        rows[-1].append(f"{sum(seconds) / len(seconds):.0f}")
    lower, upper = results[0]["lower_bound"], results[0]["upper_bound"]
    header = ["λ", "test s_mu, epoch 0", "test s_mu, last", "train s_mu, last"]
    header += ["R@1 test (%)", "train s / run"]
    text = (
        "Proxy-Anchor + bounded SVMax, MNIST-5k zero-shot, "
        f"b = {args.batch_size}, d = {args.dim}, AdamW lr "
        f"{args.learning_rate:g} (proxies x {args.proxy_lr_multiplier:g}), "
        f"{args.steps} steps; seeds "
        f"{args.seeds} (mean +/- std). Bounds of a b x d batch: "
        f"L = {lower:.3f}, U = {upper:.3f}.\n\n"
    )
    return text + _common.markdown_table(header, rows), rows


def plot(results, args) -> str:
    import numpy as np

    plt = _common.pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    for ax, name in zip(axes, BATCHES, strict=True):
        for factor in args.factors:
            runs = [r[f"s_mu_{name}"] for r in results if r["factor"] == factor]
            curves = np.asarray(runs, dtype=np.float64)
            mean, std = curves.mean(0), curves.std(0)
            epochs = np.arange(len(mean))
            ax.plot(epochs, mean, label=f"λ = {factor:g}")
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
        ax.axhline(results[0]["upper_bound"], color="r", ls="--", label="U")
        ax.axhline(results[0]["lower_bound"], color="k", ls=":", label="L")
        ax.set(xlabel="epoch", title=f"fixed {name} batch ({name} digits)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("s_mu")
    axes[0].legend(fontsize=8)
    return _common.save_figure(
        figure, args.output_dir, "svmax_lambda_curves.png"
    )


def main(argv=None):
    args = parse_args(argv)
    splits, fixed = load_data(args.batch_size)
    results = []
    for seed in args.seeds:
        for factor in args.factors:
            results.append(run(factor, seed, args, splits, fixed))
            r = results[-1]
            print(
                f"seed {seed} λ = {factor:g}: test s_mu "
                f"{r['s_mu_test'][0]:.3f} -> {r['s_mu_test'][-1]:.3f}, R@1 "
                f"{100 * r['recall_at_1']:.2f} ({r['train_seconds']:.0f} s)"
            )
    text, rows = report(results, args)
    print("\n" + text)
    _common.write_results(
        args.output_dir,
        text,
        {"args": vars(args), "rows": rows, "runs": results},
    )
    print("wrote", plot(results, args))
    return results


if __name__ == "__main__":
    main()
