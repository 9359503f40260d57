"""SVMax against GAN mode collapse on a ring of 8 Gaussians.

The SVMax paper's GAN experiment (Sec. 4.2, Fig. 5), measured: a GAN learns
the 2-D mixture of 8 Gaussians on a circle of radius 2 (std 0.02, Metz et
al. 2017), with a learning rate of 0.025 for both networks to induce mode
collapse, as the paper does. Four variants:

- `vanilla`: the GAN as is;
- `svmax`: the generator minimizes `loss_G - 0.01 * s_mu(G(z))`, the
  unbounded SVMax (Eq. 1) on the raw fake batch (no normalization);
- `unrolled`: the generator's loss is computed against a copy of the
  discriminator advanced 5 steps (Metz et al.);
- `unrolled_svmax`: both.

Setup of the public PyTorch code the paper modified
(andrewliao11/unrolled-gans): z ~ N(0, I_256); generator 256 -> 128 -> 128
-> 2 with tanh; discriminator 2 -> 128 -> 128 -> 1 with ReLU (a logit);
batch 512; Adam(beta_1=0.5) for both; one discriminator step, then one
generator step, per training step; non-saturating generator loss
`BCE(D(G(z)), 1)`. Here both learning rates are 0.025 (the paper's only
change).

Unrolling. The discriminator copy is advanced with the discriminator's own
optimizer (Adam, its moments copied too) on the step's real batch and on
the generator's fake batch, and the generator's gradient is taken against
the advanced copy, with the copy's weights held fixed: gradients do NOT
flow through the unrolled updates. This is the common first-order
surrogate that the public code the paper used computes (its unrolled
`optimizer.step()` is not differentiated); Metz et al. differentiate
through the unrolled steps as well. The real discriminator is unchanged by
the unrolling.

Measured (what Fig. 5 only shows): at each snapshot step, 2,500 samples of
a fixed noise batch; a sample is high quality if it lies within 3 std
(0.06) of its nearest mode; a mode is covered if it holds at least 1 % of
the samples (25), see `keras_featreg.evaluation.mode_coverage`. Because
3 std only counts sharp samples, the table also counts the modes reached
within 10 std (0.2, still far below the 1.53 between neighbouring modes):
that column tells a collapsed generator (few modes reached) from a blurry
one (all modes reached, few sharp samples). Reported as mean +/- std over
seeds, with s_mu of the generator's fake batch (the History mean over the
snapshot interval; about 2 * sqrt(512 / 2) = 32 for a batch spread evenly
on the ring, less when it collapses onto fewer directions).

Default (offline, about 5 minutes on 2 CPU cores): 1,500 steps, snapshots
at steps 500, 1,000 and 1,500, seeds 0, 1 and 2, all four variants.

    python examples/gan_mixture.py
    python examples/gan_mixture.py --steps 5000 --seeds 0 1 2 3 4 \
        --variants vanilla svmax --lr 0.025 --output-dir runs/gan

Outputs (in --output-dir): gan_mixture.png (Fig. 5: rows = training
steps, columns = variants, last row the ground truth; first seed),
gan_mixture_coverage.png (modes covered and high-quality share against
steps), results.md, results.json.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg.evaluation.modes import mode_coverage  # noqa: E402
from keras_featreg.regularizers import SVMaxRegularizer  # noqa: E402

NUM_MODES = 8
RADIUS = 2.0
STD = 0.02
LATENT_DIM = 256
HIDDEN = 128
VARIANTS = {
    # name: (unrolling steps, SVMax factor lambda)
    "vanilla": (0, 0.0),
    "svmax": (0, 0.01),
    "unrolled": (5, 0.0),
    "unrolled_svmax": (5, 0.01),
}
TITLES = {
    "vanilla": "Vanilla GAN",
    "svmax": "Vanilla + SVMax",
    "unrolled": "Unrolled GAN",
    "unrolled_svmax": "Unrolled + SVMax",
}


def ring_centers(num_modes: int = NUM_MODES, radius: float = RADIUS):
    """The mixture's means: `num_modes` points evenly spaced on a circle."""
    angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample_ring(num_samples: int, seed: int, std: float = STD) -> np.ndarray:
    """`num_samples` float32 points of the mixture (uniform mode weights)."""
    rng = np.random.default_rng(seed)
    centers = ring_centers()
    modes = rng.integers(0, NUM_MODES, size=num_samples)
    noise = rng.normal(scale=std, size=(num_samples, 2))
    return (centers[modes] + noise).astype("float32")


def ring_dataset(batch_size: int, seed: int, std: float = STD):
    """An endless `tf.data.Dataset` of real batches `(batch_size, 2)`."""
    centers = tf.constant(ring_centers(), tf.float32)

    def batch(index):
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.cast(seed, tf.int64), index]), 2
        )
        modes = tf.random.stateless_uniform(
            (batch_size,), seeds[0], maxval=NUM_MODES, dtype=tf.int32
        )
        noise = tf.random.stateless_normal((batch_size, 2), seeds[1])
        return tf.gather(centers, modes) + std * noise

    return (
        tf.data.Dataset.counter()
        .map(batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def build_generator(latent_dim: int = LATENT_DIM, hidden: int = HIDDEN):
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(2),
        ],
        name="generator",
    )


def build_discriminator(hidden: int = HIDDEN):
    return keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(1),  # a logit
        ],
        name="discriminator",
    )


def _bce(labels_value: float, logits):
    labels = tf.fill(tf.shape(logits), labels_value)
    return tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    )


class MixtureGAN(keras.Model):
    """A GAN with optional unrolling and SVMax on the generator's batch.

    `fit` on a dataset of real batches. Each training step: one
    discriminator step on (real batch, fake batch), then one generator
    step on a fresh fake batch of the same size:

    ```python
    d_loss = BCE(D(x), 1) + BCE(D(G(z1)), 0)
    D_k = D advanced k steps on (x, G(z2))       # unrolling_steps = k
    g_loss = BCE(D_k(G(z2)), 1)                  # non-saturating
    loss_G = g_loss - svmax_factor * s_mu(G(z2))   # Eq. 1, unnormalized
    ```

    D_k is a copy (weights and optimizer state) advanced with the
    discriminator's optimizer; its weights are constants for the
    generator's gradient (the first-order surrogate of Metz et al.).
    Logs `d_loss`, `g_loss` (the GAN term) and `mean_singular_value`
    (s_mu of the generator's fake batch, for every variant).

    Args:
        generator: Keras model, noise `(b, latent_dim)` -> points `(b, 2)`.
        discriminator: Keras model, points `(b, 2)` -> logits `(b, 1)`.
        latent_dim: Int, the noise dimension. Defaults to `256`.
        unrolling_steps: Int >= 0, discriminator steps to unroll. Defaults
            to `0`.
        svmax_factor: Float >= 0, lambda of the unbounded SVMax term.
            Defaults to `0.0`.
        seed: Int, seed of the noise. Defaults to `0`.
    """

    def __init__(
        self,
        generator,
        discriminator,
        latent_dim: int = LATENT_DIM,
        unrolling_steps: int = 0,
        svmax_factor: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if unrolling_steps < 0:
            raise ValueError(
                "`unrolling_steps` must be >= 0. "
                f"Received: unrolling_steps={unrolling_steps}"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.unrolling_steps = int(unrolling_steps)
        self.svmax = SVMaxRegularizer(
            factor=svmax_factor, bounded=False, normalize=False
        )
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.unrolled_discriminator = None
        if self.unrolling_steps:
            self.unrolled_discriminator = keras.models.clone_model(
                discriminator
            )
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.s_mu_tracker = keras.metrics.Mean(name="mean_singular_value")

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = keras.optimizers.get(d_optimizer)
        self.g_optimizer = keras.optimizers.get(g_optimizer)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.unroll_optimizer = None
        if self.unrolling_steps:
            self.unroll_optimizer = keras.optimizers.deserialize(
                keras.optimizers.serialize(self.d_optimizer)
            )
            self.unroll_optimizer.build(
                self.unrolled_discriminator.trainable_variables
            )

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.s_mu_tracker]

    def call(self, noise, training=False):
        return self.generator(noise, training=training)

    def noise(self, batch_size):
        return keras.random.normal(
            (batch_size, self.latent_dim), seed=self.seed_generator
        )

    def _d_step(self, discriminator, optimizer, real, fake):
        with tf.GradientTape() as tape:
            loss = _bce(1.0, discriminator(real, training=True)) + _bce(
                0.0, discriminator(fake, training=True)
            )
        variables = discriminator.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    def _unrolled(self, real, fake):
        """The discriminator advanced `unrolling_steps` steps (a copy)."""
        copy, optimizer = self.unrolled_discriminator, self.unroll_optimizer
        for target, source in zip(
            copy.variables, self.discriminator.variables, strict=True
        ):
            target.assign(source)
        for target, source in zip(
            optimizer.variables, self.d_optimizer.variables, strict=True
        ):
            target.assign(source)
        fake = tf.stop_gradient(fake)
        for _ in range(self.unrolling_steps):
            self._d_step(copy, optimizer, real, fake)
        return copy

    def train_step(self, data):
        real = tf.convert_to_tensor(data)
        batch_size = tf.shape(real)[0]
        d_loss = self._d_step(
            self.discriminator,
            self.d_optimizer,
            real,
            self.generator(self.noise(batch_size), training=True),
        )
        noise = self.noise(batch_size)
        discriminator = self.discriminator
        if self.unrolling_steps:
            discriminator = self._unrolled(
                real, self.generator(noise, training=True)
            )
        with tf.GradientTape() as tape:
            fake = self.generator(noise, training=True)
            g_loss = _bce(1.0, discriminator(fake, training=True))
            stats = self.svmax.stats(fake)
            loss = g_loss + (stats["penalty"] if self.svmax.factor else 0.0)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(loss, variables), variables)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.s_mu_tracker.update_state(stats["mean_singular_value"])
        return {m.name: m.result() for m in self.metrics}


class Snapshots(keras.callbacks.Callback):
    """Samples a fixed noise batch at the end of every epoch.

    Appends `(step, samples)` to `self.samples` and a report to
    `self.reports`: `mode_coverage` at `num_sigma` std, plus
    `modes_covered_loose` and `share_loose` at `loose_sigma` std (a radius
    that ignores how sharp the modes are and only asks whether the
    generator reaches them), and the `step`.
    """

    def __init__(
        self,
        noise,
        steps_per_epoch: int,
        num_sigma: float = 3.0,
        loose_sigma: float = 10.0,
    ):
        super().__init__()
        self.noise = noise
        self.steps_per_epoch = steps_per_epoch
        self.num_sigma = num_sigma
        self.loose_sigma = loose_sigma
        self.samples = []
        self.reports = []

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        samples = keras.ops.convert_to_numpy(
            self.model.generator(self.noise, training=False)
        )
        report = mode_coverage(samples, ring_centers(), STD, self.num_sigma)
        loose = mode_coverage(samples, ring_centers(), STD, self.loose_sigma)
        report["modes_covered_loose"] = loose["modes_covered"]
        report["share_loose"] = loose["high_quality_share"]
        report["step"] = step
        self.samples.append((step, samples))
        self.reports.append(report)


def train_variant(
    variant: str,
    seed: int,
    steps: int = 1500,
    snapshots: int = 3,
    lr: float = 0.025,
    batch_size: int = 512,
    num_samples: int = 2500,
    latent_dim: int = LATENT_DIM,
    hidden: int = HIDDEN,
    num_sigma: float = 3.0,
    loose_sigma: float = 10.0,
    verbose: int = 0,
) -> dict:
    """Trains one variant with one seed; returns its snapshots and history.

    Returns:
        Dict: `variant`, `seed`, `reports` (one `mode_coverage` dict per
        snapshot, with `step`), `samples` (list of `(step, array)`),
        `history` (Keras History dict, one entry per snapshot interval)
        and `seconds`.
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"`variant` must be one of {sorted(VARIANTS)}. "
            f"Received: variant={variant!r}"
        )
    if steps % snapshots:
        raise ValueError(
            f"`steps` must be a multiple of `snapshots` ({snapshots}). "
            f"Received: steps={steps}"
        )
    unrolling_steps, factor = VARIANTS[variant]
    keras.utils.set_random_seed(seed)
    model = MixtureGAN(
        build_generator(latent_dim, hidden),
        build_discriminator(hidden),
        latent_dim=latent_dim,
        unrolling_steps=unrolling_steps,
        svmax_factor=factor,
        seed=seed,
    )
    model.compile(
        d_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
    )
    # The evaluation noise is the same for every variant of a seed.
    noise = np.random.default_rng(10_000 + seed).normal(
        size=(num_samples, latent_dim)
    )
    steps_per_epoch = steps // snapshots
    snapshot = Snapshots(
        noise.astype("float32"), steps_per_epoch, num_sigma, loose_sigma
    )
    start = time.perf_counter()
    history = model.fit(
        ring_dataset(batch_size, seed),
        epochs=snapshots,
        steps_per_epoch=steps_per_epoch,
        callbacks=[snapshot],
        shuffle=False,
        verbose=verbose,
    )
    return {
        "variant": variant,
        "seed": seed,
        "reports": snapshot.reports,
        "samples": snapshot.samples,
        "history": {
            k: [float(v) for v in vs] for k, vs in history.history.items()
        },
        "seconds": time.perf_counter() - start,
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and std over seeds per (variant, step)."""
    rows = []
    variants = list(dict.fromkeys(run["variant"] for run in runs))
    keys = {
        "modes": "modes_covered",
        "quality": "high_quality_share",
        "modes_loose": "modes_covered_loose",
        "share_loose": "share_loose",
    }
    for variant in variants:
        chosen = [run for run in runs if run["variant"] == variant]
        for index, report in enumerate(chosen[0]["reports"]):
            row = {"variant": variant, "step": report["step"]}
            row["seeds"] = [run["seed"] for run in chosen]
            for name, key in keys.items():
                values = [run["reports"][index][key] for run in chosen]
                row[f"{name}_mean"] = float(np.mean(values))
                row[f"{name}_std"] = float(np.std(values))
                row[f"{name}_per_seed"] = values
            s_mu = [
                run["history"]["mean_singular_value"][index] for run in chosen
            ]
            row["s_mu_mean"] = float(np.mean(s_mu))
            row["s_mu_std"] = float(np.std(s_mu))
            rows.append(row)
    return rows


def results_table(rows: list[dict], loose_sigma: float = 10.0) -> str:
    """Markdown: mean +/- std over seeds (std over seeds, ddof=0)."""
    loose = f"{loose_sigma:g} std"
    lines = [
        "| variant | step | modes covered (3 std) | high-quality % (3 std) "
        f"| modes covered ({loose}) | samples within {loose} % "
        "| s_mu of fake batch | modes (3 std) per seed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def cell(row, name, scale=1.0, digits=1):
        mean, std = scale * row[f"{name}_mean"], scale * row[f"{name}_std"]
        return f"{mean:.{digits}f} +/- {std:.{digits}f}"

    for row in rows:
        per_seed = ", ".join(str(m) for m in row["modes_per_seed"])
        lines.append(
            f"| {row['variant']} | {row['step']} | {cell(row, 'modes')} "
            f"| {cell(row, 'quality', 100)} | {cell(row, 'modes_loose')} "
            f"| {cell(row, 'share_loose', 100)} "
            f"| {cell(row, 's_mu', digits=2)} | {per_seed} |"
        )
    return "\n".join(lines)


def _heatmap(axis, points, extent=3.0, bins=120):
    histogram, _, _ = np.histogram2d(
        points[:, 0],
        points[:, 1],
        bins=bins,
        range=[[-extent, extent], [-extent, extent]],
    )
    axis.imshow(
        np.log1p(histogram.T),
        origin="lower",
        extent=(-extent, extent, -extent, extent),
        cmap="Greens",
        interpolation="nearest",
    )
    axis.set_xticks([])
    axis.set_yticks([])


def plot_grid(runs: list[dict], path: str, num_samples: int = 2500) -> None:
    """Fig. 5: rows = training steps, columns = variants, last row = data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = runs[0]["seed"]
    chosen = [run for run in runs if run["seed"] == seed]
    steps = [step for step, _ in chosen[0]["samples"]]
    figure, axes = plt.subplots(
        len(steps) + 1,
        len(chosen),
        figsize=(2.2 * len(chosen), 2.2 * (len(steps) + 1)),
        squeeze=False,
    )
    truth = sample_ring(num_samples, seed=20_000 + seed)
    for column, run in enumerate(chosen):
        for row, (step, samples) in enumerate(run["samples"]):
            _heatmap(axes[row, column], samples)
            report = run["reports"][row]
            axes[row, column].set_title(
                f"{report['modes_covered']}/8 modes, "
                f"{100 * report['high_quality_share']:.0f}% HQ",
                fontsize=8,
            )
            if column == 0:
                axes[row, column].set_ylabel(f"step {step}")
        _heatmap(axes[-1, column], truth)
        axes[-1, column].set_title("ground truth", fontsize=8)
        axes[0, column].annotate(
            TITLES[run["variant"]],
            (0.5, 1.25),
            xycoords="axes fraction",
            ha="center",
            fontsize=10,
        )
    axes[-1, 0].set_ylabel("data")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_coverage(rows: list[dict], path: str, loose_sigma=10.0) -> None:
    """Modes covered and sample shares against steps, mean +/- std.

    Solid: within 3 std (high quality); dashed: within `loose_sigma` std.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    steps = sorted({row["step"] for row in rows})
    shift = 0.012 * (steps[-1] if steps else 1)
    for index, variant in enumerate(variants):
        chosen = [row for row in rows if row["variant"] == variant]
        x = np.array([row["step"] for row in chosen]) + shift * (
            index - (len(variants) - 1) / 2
        )
        color = f"C{index}"
        for axis, (strict, loose), scale in (
            (left, ("modes", "modes_loose"), 1.0),
            (right, ("quality", "share_loose"), 100.0),
        ):
            for key, style, label in (
                (strict, "-", variant),
                (loose, "--", None),
            ):
                axis.errorbar(
                    x,
                    scale * np.array([row[f"{key}_mean"] for row in chosen]),
                    yerr=scale
                    * np.array([row[f"{key}_std"] for row in chosen]),
                    marker="o",
                    markersize=4,
                    capsize=3,
                    linestyle=style,
                    color=color,
                    label=label,
                )
    left.set_ylabel("modes covered (of 8)")
    left.set_ylim(-0.3, 8.5)
    right.set_ylabel("samples near a mode (%)")
    right.set_ylim(-3, 103)
    for axis in (left, right):
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    left.legend(fontsize=8, loc="center right")
    figure.suptitle(
        f"solid: within 3 std (high quality); dashed: within {loose_sigma:g} "
        "std; mean +/- std over seeds",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument(
        "--snapshots",
        type=int,
        default=3,
        help="Evenly spaced evaluation points (rows of the figure).",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
    )
    parser.add_argument("--lr", type=float, default=0.025)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--num-samples",
        type=int,
        default=2500,
        help="Generated samples per evaluation.",
    )
    parser.add_argument(
        "--num-sigma",
        type=float,
        default=3.0,
        help="High quality = within this many std of a mode.",
    )
    parser.add_argument(
        "--loose-sigma",
        type=float,
        default=10.0,
        help="Second, looser radius (in std) for the modes reached.",
    )
    parser.add_argument("--latent-dim", type=int, default=LATENT_DIM)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    parser.add_argument(
        "--output-dir", default=os.path.join("runs", "gan_mixture")
    )
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for variant in args.variants:
            run = train_variant(
                variant,
                seed,
                steps=args.steps,
                snapshots=args.snapshots,
                lr=args.lr,
                batch_size=args.batch_size,
                num_samples=args.num_samples,
                latent_dim=args.latent_dim,
                hidden=args.hidden,
                num_sigma=args.num_sigma,
                loose_sigma=args.loose_sigma,
                verbose=args.verbose,
            )
            final = run["reports"][-1]
            print(
                f"seed {seed} {variant:>15}: {final['modes_covered']}/8 "
                f"modes, {100 * final['high_quality_share']:.1f}% high "
                f"quality at step {final['step']} ({run['seconds']:.0f} s)",
                flush=True,
            )
            runs.append(run)
    rows = summarize(runs)
    table = results_table(rows, args.loose_sigma)
    print(table)
    header = (
        f"GAN on 8 Gaussians (radius {RADIUS}, std {STD}), lr {args.lr}, "
        f"batch {args.batch_size}, seeds {args.seeds}, {args.num_samples} "
        "samples per evaluation; high quality = within 3 std of a mode; "
        "a mode is covered with >= 1% of the samples.\n\n"
    )
    with open(os.path.join(args.output_dir, "results.md"), "w") as file:
        file.write(header + table + "\n")
    with open(os.path.join(args.output_dir, "results.json"), "w") as file:
        json.dump(
            {
                "args": vars(args),
                "rows": rows,
                "runs": [
                    {k: v for k, v in run.items() if k != "samples"}
                    for run in runs
                ],
            },
            file,
            indent=1,
        )
    plot_grid(
        runs,
        os.path.join(args.output_dir, "gan_mixture.png"),
        args.num_samples,
    )
    plot_coverage(
        rows,
        os.path.join(args.output_dir, "gan_mixture_coverage.png"),
        args.loose_sigma,
    )
    return rows


if __name__ == "__main__":
    main()
