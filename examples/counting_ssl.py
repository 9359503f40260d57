"""Self-supervised counting: a repulsion term against SVMax (paper App. B.3).

Representation counting (Rep-Cnt, Noroozi et al., 2017) trains a network N
that maps an image to a non-negative "count" vector, with one equivariance:
the counts of an image equal the sum of the counts of its four tiles.

```python
T_1..T_4 = the four quadrants of I           # 14 x 14 each (MNIST 28 x 28)
down(I) = I average-pooled to the tile size  # 14 x 14
D(I, J) = ||N(down(J)) - sum_i N(T_i(I))||^2
```

D(I, I) alone has the trivial solution N(x) = 0. The SVMax paper (App. B.3,
Table 5) compares Rep-Cnt's problem-specific fix with its generic prior:

```python
Eq. 18 ("repulsion"): D(I, I) + max(0, m - D(I, Ihat))     # m = 10
Eq. 19 ("svmax"):     D(I, I) - lambda * s_mu(N(down(I)))  # lambda = 10, 100
("none"):             D(I, I)                              # collapses
```

Ihat is another image of the batch (the batch rolled by one); s_mu is the
unbounded SVMax term (Eq. 1) on the raw counts of the batch: the paper
does not normalize them, since `N(I) = sum_i N(T_i)` has no solution on
the unit sphere. Every variant trains the same network from the same seed.

Evaluation, as Table 5: freeze N, then train a linear softmax probe on the
digit labels (`keras_featreg.evaluation.linear_probe_accuracy`) on each
conv layer's activations, global-average-pooled (`--probe-grid 1`), and on
the count vector. The paper resizes each conv map to < 10K features; ours
are smaller whole, but on MNIST a linear probe reads the digit from any
conv map, random ones too (~94 %), so we pool. "random" probes the
untrained network, as Table 5's "Random" row.

Table 5 (ImageNet, AlexNet; `PAPER_TABLE5` below): SVMax is slightly
below the repulsion term from conv2 to conv5 (0.7-2.2 points) and 0.3-0.5
above it on conv1: the generic prior avoids the collapse without a
problem-specific term, it does not beat that term. Our scale is far
smaller: MNIST-5k (4,000 images to train, labels unused; 1,000 to test)
with 14 x 14 tiles, a two-conv CNN, d = 32 counts (paper 128), Adam.
Measured (docs/counting_results.md): both terms avoid the collapse, but
here SVMax's conv features probe below the repulsion term's and random's.

    python examples/counting_ssl.py   # 3 seeds x 5 runs, 3.5 CPU-minutes
    python examples/counting_ssl.py --seeds 0 --factors 1 10 100

Outputs in --output-dir: results.md (mean +/- std over seeds, Table 5
beside) and results.json (every run).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

VARIANTS = ("random", "none", "repulsion", "svmax")
LAYERS = ("conv1", "conv2", "counts")
# Table 5, linear probes on ImageNet (conv1 ... conv5, top-1 %).
PAPER_TABLE5 = {
    "random": (11.6, 17.1, 16.9, 16.3, 14.1),
    "repulsion": (18.9, 30.7, 33.9, 30.6, 26.0),
    "svmax λ=10": (19.4, 29.3, 31.7, 28.9, 24.5),
    "svmax λ=100": (19.2, 29.4, 31.8, 29.3, 25.3),
}


def add_arguments(parser):
    add = parser.add_argument
    add("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    add("--factors", type=float, nargs="+", default=[10.0, 100.0],
        help="SVMax lambdas (Eq. 19), one run each")  # fmt: skip
    add("--margin", type=float, default=10.0, help="m of Eq. 18")
    add("--batch-size", type=int, default=64)
    add("--dim", type=int, default=32, help="d, size of the count vector")
    add("--filters", type=int, default=16, help="conv1; conv2 has twice")
    add("--probe-grid", type=int, default=1, help="conv maps pooled to g x g")
    add("--probe-epochs", type=int, default=30)
    add("--test-size", type=int, default=1000)
    add("--train-size", type=int, default=4000)


def parse_args(argv=None):
    return _common.parse_args(
        __doc__,
        argv,
        learning_rate=1e-3,
        seeds=(0, 1, 2),
        steps=375,  # 6 epochs of 62 batches of 64 over 4,000 images
        output_dir=os.path.join("runs", "counting_ssl"),
        add_arguments=add_arguments,
    )


def runs_of(args) -> list:
    """`(name, variant, lambda)` of every run: one svmax run per lambda."""
    return [
        (f"svmax λ={f:g}" if variant == "svmax" else variant, variant, f)
        for variant in args.variants
        for f in (args.factors if variant == "svmax" else [0.0])
    ]


def tiles_and_downsampled(images):
    """The 4 quadrants `(4, b, h/2, w/2, c)` and the 2x-downsampled image."""
    import tensorflow as tf

    h, w = images.shape[1] // 2, images.shape[2] // 2
    quadrants = [images[:, :h, :w], images[:, :h, w:]]
    quadrants += [images[:, h:, :w], images[:, h:, w:]]
    return tf.stack(quadrants), tf.nn.avg_pool2d(images, 2, 2, "VALID")


def build_network(input_shape=(14, 14, 1), dim=32, filters=16):
    """conv1-pool-conv2-pool-Dense(128)-Dense(d, relu): N, with its convs.

    Outputs `[conv1, conv2, counts]`; the counts are N(x).
    """
    import keras

    layers = keras.layers
    inputs = keras.Input(input_shape)
    conv1 = layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    conv2 = layers.Conv2D(2 * filters, 3, padding="same", activation="relu")(
        layers.MaxPooling2D()(conv1)
    )
    x = layers.Flatten()(layers.MaxPooling2D()(conv2))
    x = layers.Dense(128, activation="relu")(x)
    counts = layers.Dense(dim, activation="relu")(x)
    return keras.Model(inputs, [conv1, conv2, counts], name="counting")


def counting_terms(
    network, images, variant="none", margin=10.0, factor=1.0, training=False
):
    """Eq. 18 or 19 (`"loss"`) and its terms on a batch of full-size images."""
    import tensorflow as tf

    from keras_featreg.ops import svmax_penalty

    tiles, down = tiles_and_downsampled(images)
    b = tf.shape(images)[0]
    # One pass of N over the 5 b images: down(I), then the 4 tile stacks.
    batch = tf.concat([down, tf.reshape(tiles, (-1, *tiles.shape[2:]))], 0)
    counts = network(batch, training=training)[-1]
    whole = counts[:b]
    tile_sum = tf.reduce_sum(tf.reshape(counts[b:], (4, b, -1)), axis=0)
    other = tf.roll(whole, shift=1, axis=0)  # N(down(Ihat))
    distance = tf.reduce_sum(tf.square(whole - tile_sum), axis=-1)
    repulsion = tf.nn.relu(margin - tf.reduce_sum((other - tile_sum) ** 2, -1))
    # Eq. 1, unbounded, on the raw counts: penalty = -lambda * s_mu.
    penalty, s_mu = svmax_penalty(whole, factor, bounded=False, normalize=False)
    terms = {
        "equivariance": tf.reduce_mean(distance),
        "repulsion": tf.reduce_mean(repulsion),
        "svmax": penalty,
        "s_mu": s_mu,
        "norm": tf.reduce_mean(tf.norm(whole, axis=-1)),
    }
    terms["loss"] = terms["equivariance"]  # "none"
    if variant in ("repulsion", "svmax"):  # Eq. 18, Eq. 19
        terms["loss"] += terms[variant]
    return terms


def probe_features(activations, grid=1):
    """Conv maps `(n, h, w, c)` average-pooled to a grid x grid, flattened.

    `grid=1` is global average pooling; vectors `(n, d)` pass through.
    """
    import numpy as np

    x = np.asarray(activations, dtype=np.float32)
    if x.ndim == 2:
        return x
    rows = np.array_split(np.arange(x.shape[1]), grid)
    cols = np.array_split(np.arange(x.shape[2]), grid)
    cells = [x[:, r][:, :, c].mean(axis=(1, 2)) for r in rows for c in cols]
    return np.stack(cells, axis=1).reshape(len(x), -1)


def run(variant, factor, seed, args, splits):
    """Trains one variant (none for "random") and probes it; returns a dict."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_featreg.evaluation import linear_probe_accuracy
    from keras_featreg.ops import svmax_bounds

    (x_train, y_train), (x_test, y_test) = splits
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    network = build_network((14, 14, 1), args.dim, args.filters)
    optimizer = keras.optimizers.Adam(args.learning_rate)

    @tf.function
    def train_step(images):
        with tf.GradientTape() as tape:
            terms = counting_terms(
                network, images, variant, args.margin, factor, training=True
            )
        variables = network.trainable_variables
        optimizer.apply(tape.gradient(terms["loss"], variables), variables)

    batches = (
        tf.data.Dataset.from_tensor_slices(x_train)
        .shuffle(len(x_train), seed=seed)
        .repeat()
        .batch(args.batch_size, drop_remainder=True)
    )
    steps = 0 if variant == "random" else args.steps
    for images in batches.take(steps):
        train_step(images)

    outputs = [  # [conv1, conv2, counts] of down(I), train then test
        network.predict(tiles_and_downsampled(x)[1], batch_size=500, verbose=0)
        for x in (x_train, x_test)
    ]
    record = {"seed": seed}
    for i, layer in enumerate(LAYERS):
        f_train, f_test = (
            probe_features(o[i], args.probe_grid) for o in outputs
        )
        probe = linear_probe_accuracy(
            None, f_train, y_train, f_test, y_test, args.probe_epochs, seed=seed
        )
        record[f"{layer}_probe"] = 100 * probe["test_accuracy"]
        record[f"{layer}_dims"] = f_train.shape[1]
    counts = np.float64(outputs[1][-1])
    norms = np.linalg.norm(counts, axis=1)
    unit = counts / np.maximum(norms, 1e-12)[:, None]
    test_terms = counting_terms(network, tf.constant(x_test))
    record.update(
        s_mu=np.linalg.svd(unit, compute_uv=False).mean(),
        s_mu_bounds=[float(v) for v in svmax_bounds(*counts.shape)],
        raw_s_mu=np.linalg.svd(counts, compute_uv=False).mean(),
        norm=norms.mean(),
        equivariance=float(test_terms["equivariance"]),
        num_test=len(counts),
    )
    return record


def load_split(test_size=1000, train_size=4000, seed=0):
    """MNIST-5k in [0, 1], a seeded split; train labels are for probes only."""
    import numpy as np

    from keras_featreg.data import load_mnist_5k

    images, labels = load_mnist_5k()
    order = np.random.default_rng(seed).permutation(len(images))
    x, y = images[order].astype("float32") / 255.0, labels[order]
    test, train = slice(0, test_size), slice(test_size, test_size + train_size)
    return (x[train], y[train]), (x[test], y[test])


COLUMNS = (  # key, header, digits
    ("conv1_probe", "conv1 probe %", 1),
    ("conv2_probe", "conv2 probe %", 1),
    ("counts_probe", "counts probe %", 1),
    ("s_mu", "s_mu (L2-norm.)", 3),
    ("raw_s_mu", "s_mu (raw)", 2),
    ("norm", "mean ‖N(x)‖", 2),
    ("equivariance", "D (test)", 3),
)


def report(results, args) -> tuple[str, list]:
    """Mean +/- std over seeds per variant, Table 5 beside; markdown, rows."""
    rows = []
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        cells = [_common.format_mean_std([r[k] for r in runs], digits)
                 for k, _, digits in COLUMNS]  # fmt: skip
        rows.append([name, len(runs)] + cells)
    header = ["variant", "seeds"] + [title for _, title, _ in COLUMNS]
    first = results[0]
    lower, upper = first["s_mu_bounds"]
    paper = [[name, a, b, " / ".join(map(str, c))]
             for name, (a, b, *c) in PAPER_TABLE5.items()]  # fmt: skip
    text = (
        f"Rep-Cnt on MNIST-5k, seeds {args.seeds} (mean +/- std), "
        f"{args.steps} steps of batch {args.batch_size}, Adam "
        f"{args.learning_rate:g}, d = {args.dim}, m = {args.margin:g}; probe "
        f"features: conv1 {first['conv1_dims']}, conv2 {first['conv2_dims']}; "
        f"s_mu of the {first['num_test']} test counts lies in [L, U] = "
        f"[{lower:.3f}, {upper:.3f}].\n\n"
        + _common.markdown_table(header, rows)
        + "\nPaper, Table 5 (ImageNet, AlexNet, linear probe top-1 %):\n\n"
        + _common.markdown_table(["variant", *LAYERS[:2], "conv3-5"], paper)
    )
    return text, rows


def main(argv=None):
    args = parse_args(argv)
    splits = load_split(args.test_size, args.train_size)
    results = []
    for seed in args.seeds:
        for name, variant, factor in runs_of(args):
            start = time.perf_counter()
            record = run(variant, factor, seed, args, splits)
            record.update(variant=name, seconds=time.perf_counter() - start)
            results.append(record)
            scores = ", ".join(f"{k} {record[k]:.3g}" for k, *_ in COLUMNS)
            print(f"{name}, seed {seed}: {scores} ({record['seconds']:.0f} s)")
    text, rows = report(results, args)
    print(text)
    payload = {"args": vars(args), "rows": rows, "runs": results}
    _common.write_results(args.output_dir, text, payload)
    return results


if __name__ == "__main__":
    main()
