"""A GAN on a ring of 8 Gaussians: does SVMax prevent mode collapse?

The SVMax paper's Fig. 5 (Sec. 4.2): a GAN learns a 2-D mixture of 8
Gaussians on a circle of radius 2 (std 0.02). The paper modified the
public PyTorch notebook `unrolled_gan.ipynb` (github
`andrewliao11/unrolled-gans`) in two ways only: both learning rates are
0.025 (to provoke mode collapse), and the generator minimizes
`g_loss - 0.01 * s_mu(G(z))`, the unbounded SVMax (Eq. 1) of the raw
512 x 2 fake batch. This script mirrors the notebook:

- G: 256 -> 128 -> 128 -> 2 (tanh); D: 2 -> 128 -> 128 -> 1 (ReLU, then
  sigmoid + binary cross-entropy, here on logits); PyTorch's default
  initialization: kernels and biases uniform in +-1/sqrt(fan_in);
- z ~ N(0, I_256), batch 512, Adam(beta = (0.5, 0.999)); per iteration one
  D step on a real and a fake batch, then one G step (non-saturating loss);
  3,000 iterations, snapshots every 300;
- unrolled variants: before the G step, D takes 5 more steps (the
  paper's "unrolled GAN for five steps"; the notebook's default is 10),
  each on a *fresh* real batch and on G's batch of this step's noise; G's
  gradient is taken against that advanced D (not through its updates: the
  notebook's `optimizer.step()` is not differentiated); then D's weights
  are restored. As in the notebook, D's Adam moments keep those steps;
- the mixture weights: "random" as in the committed notebook (each mode
  `uniform(0, 1)`, normalized; seeded by `--mixture-seed`) or "uniform".

Four variants share each seed (same initial networks, same data stream):
vanilla, svmax, unrolled and unrolled_svmax.

Measured at each snapshot on 2,500 samples of a fixed noise batch (see
`keras_featreg.evaluation.mode_coverage`): the modes reached, i.e. holding
>= 1 % of the samples within 3 std (0.06) of their centre, and within a
looser 10 std (0.2, far below the 1.53 between neighbours), which tells a
collapsed generator from a blurry one; the share of samples within 3 std;
and the true weight of the modes missed at 10 std.

    python examples/gan_mixture.py --steps 600        # a short run
    python examples/gan_mixture.py                    # the notebook's length

Outputs in --output-dir: results.md, results.json, gan_mixture_<mixture>.png
(Fig. 5: rows = variants, columns = snapshots; first seed) and
gan_mixture_coverage.png (modes reached against steps, mean +/- std).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

NUM_MODES, RADIUS, STD = 8, 2.0, 0.02
VARIANTS = ("vanilla", "svmax", "unrolled", "unrolled_svmax")
MIXTURES = ("random", "uniform")


def add_arguments(parser):
    add = parser.add_argument
    add("--snapshot-every", type=int, default=300, help="iterations")
    add("--variants", nargs="+", default=list(VARIANTS), help="to train")
    add("--mixtures", nargs="+", default=list(MIXTURES), help="weights")
    add("--mixture-seed", type=int, default=0, help="of the random weights")
    add("--unrolling-steps", type=int, default=5, help="D look-ahead steps")
    add("--factor", type=float, default=0.01, help="SVMax lambda")
    add("--batch-size", type=int, default=512, help="real and fake")
    add("--num-samples", type=int, default=2500, help="per snapshot")
    add("--latent-dim", type=int, default=256, help="z dimension")
    add("--hidden", type=int, default=128, help="units per hidden layer")
    add("--loose-sigma", type=float, default=10.0, help="looser radius")


def parse_args(argv=None):
    args = _common.parse_args(
        __doc__,
        argv,
        learning_rate=0.025,
        seeds=(0, 1, 2),
        steps=3000,
        output_dir=os.path.join("runs", "gan_mixture"),
        add_arguments=add_arguments,
    )
    for name, values, allowed in (
        ("variants", args.variants, VARIANTS),
        ("mixtures", args.mixtures, MIXTURES),
    ):
        if not set(values) <= set(allowed):
            raise ValueError(
                f"`{name}` must be among {allowed}. Received: {name}={values}"
            )
    return args


def ring_centers():
    import numpy as np

    angles = 2 * np.pi * np.arange(NUM_MODES) / NUM_MODES
    return RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def mixture_weights(mixture: str, seed: int = 0):
    """The notebook's `random_distribution()` (seeded) or uniform weights."""
    import numpy as np

    if mixture == "uniform":
        return np.full(NUM_MODES, 1.0 / NUM_MODES)
    weights = np.random.default_rng(seed).uniform(size=NUM_MODES)
    return weights / weights.sum()


def sample_mixture(rng, num_samples: int, weights):
    modes = rng.choice(NUM_MODES, num_samples, p=weights)
    noise = rng.normal(scale=STD, size=(num_samples, 2))
    return (ring_centers()[modes] + noise).astype("float32")


def mlp(sizes, activation, name):
    """Dense layers with PyTorch's default initialization."""
    import keras

    model = keras.Sequential([keras.Input((sizes[0],))], name=name)
    for i, (fan_in, units) in enumerate(
        zip(sizes[:-1], sizes[1:], strict=True)
    ):
        limit = fan_in**-0.5
        model.add(
            keras.layers.Dense(
                units,
                activation=activation if i < len(sizes) - 2 else None,
                kernel_initializer=keras.initializers.RandomUniform(
                    -limit, limit
                ),
                bias_initializer=keras.initializers.RandomUniform(
                    -limit, limit
                ),
            )
        )
    return model


def make_train_step(generator, discriminator, unrolling_steps, factor, lr):
    """One iteration of the notebook: a D step, then a (look-ahead) G step.

    `factor` is lambda of `-lambda * s_mu(G(z))`, 0 for no SVMax. Returns a
    `tf.function` of `(real, d_noise, g_noise, unroll_reals)`, where
    `unroll_reals` holds `unrolling_steps` fresh real batches.
    """
    import keras
    import tensorflow as tf

    from keras_featreg.regularizers import SVMaxRegularizer

    svmax = SVMaxRegularizer(factor, bounded=False, normalize=False)
    d_optimizer = keras.optimizers.Adam(lr, beta_1=0.5)
    g_optimizer = keras.optimizers.Adam(lr, beta_1=0.5)

    def bce(logits, target):
        return tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(
                tf.fill(tf.shape(logits), target), logits
            )
        )

    def d_step(real, fake):
        with tf.GradientTape() as tape:
            loss = bce(discriminator(real), 1.0) + bce(discriminator(fake), 0.0)
        variables = discriminator.trainable_variables
        d_optimizer.apply(tape.gradient(loss, variables), variables)

    @tf.function
    def train_step(real, d_noise, g_noise, unroll_reals):
        d_step(real, generator(d_noise))
        backup = [tf.identity(v) for v in discriminator.trainable_variables]
        for i in range(unrolling_steps):  # D looks ahead; G fools that D.
            d_step(unroll_reals[i], generator(g_noise))
        with tf.GradientTape() as tape:
            fake = generator(g_noise)
            loss = bce(discriminator(fake), 1.0)
            if factor:
                loss += svmax.stats(fake)["penalty"]  # -lambda * s_mu
        variables = generator.trainable_variables
        g_optimizer.apply(tape.gradient(loss, variables), variables)
        for v, value in zip(
            discriminator.trainable_variables, backup, strict=True
        ):
            v.assign(value)  # the look-ahead is undone (Adam's moments stay)

    return train_step


def run(variant, mixture, seed, args):
    """Trains one variant; returns a coverage report per snapshot."""
    import keras
    import numpy as np

    from keras_featreg.evaluation import mode_coverage

    unrolling = args.unrolling_steps if "unrolled" in variant else 0
    keras.utils.set_random_seed(seed)  # the same networks for every variant
    generator = mlp([args.latent_dim, args.hidden, args.hidden, 2], "tanh", "G")
    discriminator = mlp([2, args.hidden, args.hidden, 1], "relu", "D")
    factor = args.factor if variant.endswith("svmax") else 0.0
    train_step = make_train_step(
        generator, discriminator, unrolling, factor, args.learning_rate
    )
    weights = mixture_weights(mixture, args.mixture_seed)
    rng = np.random.default_rng(seed)  # the same data for every variant
    unroll_rng = np.random.default_rng([seed, 1])  # the look-ahead's data
    eval_noise = np.random.default_rng(10_000 + seed).normal(
        size=(args.num_samples, args.latent_dim)
    )
    b, z = args.batch_size, args.latent_dim
    snapshots = []
    for step in range(1, args.steps + 1):
        train_step(
            sample_mixture(rng, b, weights),
            rng.normal(size=(b, z)).astype("float32"),
            rng.normal(size=(b, z)).astype("float32"),
            sample_mixture(unroll_rng, b * unrolling, weights).reshape(
                unrolling, b, 2
            ),
        )
        if step % args.snapshot_every == 0 or step == args.steps:
            samples = np.float64(generator(eval_noise.astype("float32")))
            sharp = mode_coverage(samples, ring_centers(), STD, 3.0)
            loose = mode_coverage(
                samples, ring_centers(), STD, args.loose_sigma
            )
            missed = np.array(loose["counts"]) < loose["min_count"]
            snapshots.append(
                {
                    "step": step,
                    "modes_3sigma": sharp["modes_covered"],
                    "modes_loose": loose["modes_covered"],
                    "share_3sigma": sharp["high_quality_share"],
                    "missed_weight": float(weights[missed].sum()),
                    "samples": samples,
                }
            )
    return snapshots


def report(results, args) -> tuple[str, list]:
    """Mean +/- std over seeds per mixture, variant and snapshot."""
    import numpy as np

    from keras_featreg.evaluation import mode_coverage

    text, rows = "", []
    header = ["mixture", "variant", "step", "modes 3σ", "modes 10σ"]
    header += ["share 3σ (%)", "missed weight (%)"]
    for mixture in args.mixtures:
        weights = mixture_weights(mixture, args.mixture_seed)
        data = sample_mixture(
            np.random.default_rng(0), args.num_samples, weights
        )
        reached = mode_coverage(data, ring_centers(), STD)["modes_covered"]
        text += (
            f"- {mixture} weights (%): {np.round(100 * weights, 1).tolist()}; "
            f"{args.num_samples} real samples reach {reached} modes at 3σ\n"
        )
        for variant in args.variants:
            runs = results[mixture, variant]
            for i, step in enumerate(s["step"] for s in runs[0]):
                cells = [mixture, variant, step]
                for key, scale in (
                    ("modes_3sigma", 1),
                    ("modes_loose", 1),
                    ("share_3sigma", 100),
                    ("missed_weight", 100),
                ):
                    values = [scale * snapshots[i][key] for snapshots in runs]
                    cells.append(_common.format_mean_std(values))
                rows.append(cells)
    text = (
        f"GAN on 8 Gaussians, seeds {args.seeds} (mean +/- std), "
        f"lr {args.learning_rate}, {args.steps} iterations, unrolling "
        f"{args.unrolling_steps}, lambda {args.factor}.\n\n{text}\n"
        + _common.markdown_table(header, rows)
    )
    return text, rows


def plot(results, args):
    for mixture in args.mixtures:  # Fig. 5, first seed
        panels = [
            [
                (f"{v} {s['step']}", s["samples"], None)
                for s in results[mixture, v][0]
            ]
            for v in args.variants
        ]
        name = f"gan_mixture_{mixture}.png"
        _common.scatter_grid(panels, args.output_dir, name, 2.6, ring_centers())
    panels = []
    for mixture in args.mixtures:
        lines = {}
        for v in args.variants:
            runs = results[mixture, v]
            steps = [s["step"] for s in runs[0]]
            lines[v] = steps, [[s["modes_3sigma"] for s in r] for r in runs]
        panels.append((f"{mixture} weights", "modes reached (3σ)", lines))
    _common.curves(panels, args.output_dir, "gan_mixture_coverage.png")


def main(argv=None):
    args = parse_args(argv)
    results = {}
    for mixture in args.mixtures:
        for variant in args.variants:
            results[mixture, variant] = []
            for seed in args.seeds:
                start = time.perf_counter()
                results[mixture, variant].append(
                    run(variant, mixture, seed, args)
                )
                seconds = time.perf_counter() - start
                print(f"{mixture} {variant} seed {seed}: {seconds:.0f} s")
    text, rows = report(results, args)
    print(text)
    runs = {
        f"{m}/{v}": [
            [{k: x for k, x in s.items() if k != "samples"} for s in r]
            for r in snapshots
        ]
        for (m, v), snapshots in results.items()
    }
    payload = {"args": vars(args), "rows": rows, "runs": runs}
    _common.write_results(args.output_dir, text, payload)
    plot(results, args)
    return results


if __name__ == "__main__":
    main()
