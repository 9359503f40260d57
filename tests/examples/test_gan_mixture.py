import os
import tempfile

import keras
import numpy as np
from keras.src import testing

from tests.examples.common import load_example

gan = load_example("gan_mixture")

TINY = {"latent_dim": 8, "hidden": 8}


def tiny_model(unrolling_steps=0, svmax_factor=0.0, seed=0, lr=0.01):
    keras.utils.set_random_seed(seed)
    model = gan.MixtureGAN(
        gan.build_generator(**TINY),
        gan.build_discriminator(TINY["hidden"]),
        latent_dim=TINY["latent_dim"],
        unrolling_steps=unrolling_steps,
        svmax_factor=svmax_factor,
        seed=seed,
    )
    model.compile(
        d_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(lr, beta_1=0.5),
    )
    return model


def weights(model):
    """All of a model's weights as one flat vector."""
    return np.concatenate(
        [np.ravel(keras.ops.convert_to_numpy(v)) for v in model.weights]
    )


class RingDataTest(testing.TestCase):
    def test_centers(self):
        centers = gan.ring_centers()
        self.assertEqual(centers.shape, (8, 2))
        self.assertAllClose(np.linalg.norm(centers, axis=1), np.full(8, 2.0))
        # Evenly spaced: neighbours are 2 * r * sin(pi / 8) apart.
        gaps = np.linalg.norm(centers - np.roll(centers, 1, axis=0), axis=1)
        self.assertAllClose(gaps, np.full(8, 4 * np.sin(np.pi / 8)))

    def test_dataset_samples_the_mixture(self):
        batches = list(gan.ring_dataset(256, seed=3).take(2))
        self.assertEqual(batches[0].shape, (256, 2))
        self.assertNotAllClose(batches[0], batches[1])
        points = np.concatenate([b.numpy() for b in batches])
        distances = np.linalg.norm(
            points[:, None] - gan.ring_centers()[None], axis=-1
        )
        self.assertLess(distances.min(axis=1).max(), 6 * gan.STD)
        self.assertEqual(len(np.unique(distances.argmin(axis=1))), 8)
        # Same seed, same stream.
        again = next(iter(gan.ring_dataset(256, seed=3)))
        self.assertAllClose(again, batches[0])

    def test_sample_ring(self):
        points = gan.sample_ring(400, seed=0)
        report = gan.mode_coverage(points, gan.ring_centers(), gan.STD)
        self.assertEqual(report["modes_covered"], 8)
        self.assertGreater(report["high_quality_share"], 0.97)


class MixtureGANTest(testing.TestCase):
    def test_fit_logs_losses_and_s_mu(self):
        for unrolling_steps, factor in ((0, 0.0), (2, 0.01)):
            model = tiny_model(unrolling_steps, factor)
            history = model.fit(
                gan.ring_dataset(32, seed=0),
                epochs=2,
                steps_per_epoch=3,
                shuffle=False,
                verbose=0,
            )
            for key in ("d_loss", "g_loss", "mean_singular_value"):
                values = history.history[key]
                self.assertLen(values, 2)
                self.assertTrue(np.all(np.isfinite(values)), key)
            self.assertGreater(history.history["mean_singular_value"][-1], 0)

    def test_svmax_is_unbounded_and_unnormalized(self):
        model = tiny_model(svmax_factor=0.01)
        self.assertEqual(
            model.svmax.get_config(),
            {
                "factor": 0.01,
                "bounded": False,
                "normalize": False,
                "global_batch": True,
            },
        )
        fake = keras.random.normal((64, 2), seed=1) * 3.0
        stats = model.svmax.stats(fake)
        singular = np.linalg.svd(keras.ops.convert_to_numpy(fake), False, False)
        self.assertAllClose(
            stats["mean_singular_value"], singular.mean(), rtol=1e-5
        )
        self.assertAllClose(stats["penalty"], -0.01 * singular.mean())

    def test_svmax_changes_only_the_generator_update(self):
        real = gan.ring_dataset(32, seed=0).take(1).get_single_element()
        plain, regularized = tiny_model(), tiny_model(svmax_factor=1.0)
        self.assertAllClose(
            weights(plain.discriminator), weights(regularized.discriminator)
        )
        plain.train_step(real)
        regularized.train_step(real)
        self.assertAllClose(
            weights(plain.discriminator), weights(regularized.discriminator)
        )
        self.assertNotAllClose(
            weights(plain.generator), weights(regularized.generator)
        )

    def test_unrolling_leaves_the_discriminator_alone(self):
        real = gan.ring_dataset(32, seed=0).take(1).get_single_element()
        plain, unrolled = tiny_model(), tiny_model(unrolling_steps=3)
        plain.train_step(real)
        unrolled.train_step(real)
        # The discriminator's own step is the same; only G sees the copy.
        self.assertAllClose(
            weights(plain.discriminator), weights(unrolled.discriminator)
        )
        self.assertEqual(
            int(unrolled.d_optimizer.iterations),
            int(plain.d_optimizer.iterations),
        )
        self.assertNotAllClose(
            weights(plain.generator), weights(unrolled.generator)
        )
        # The copy was advanced 3 steps from the discriminator's state.
        self.assertEqual(int(unrolled.unroll_optimizer.iterations), 1 + 3)
        self.assertNotAllClose(
            weights(unrolled.unrolled_discriminator),
            weights(unrolled.discriminator),
        )

    def test_unrolled_copy_matches_manual_steps(self):
        real = gan.ring_dataset(32, seed=0).take(1).get_single_element()
        model = tiny_model(unrolling_steps=2)
        fake = model.generator(model.noise(32))
        copy = model._unrolled(real, fake)
        # Replay: a fresh discriminator with the same weights and the same
        # optimizer, stepped twice by hand.
        manual = gan.build_discriminator(TINY["hidden"])
        manual.set_weights(model.discriminator.get_weights())
        optimizer = keras.optimizers.Adam(0.01, beta_1=0.5)
        optimizer.build(manual.trainable_variables)
        for _ in range(2):
            model._d_step(manual, optimizer, real, fake)
        self.assertAllClose(weights(copy), weights(manual), atol=1e-6)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: unrolling_steps=-1"):
            gan.MixtureGAN(
                gan.build_generator(**TINY),
                gan.build_discriminator(8),
                unrolling_steps=-1,
            )
        with self.assertRaisesRegex(ValueError, "Received: variant='x'"):
            gan.train_variant("x", 0)
        with self.assertRaisesRegex(ValueError, "Received: steps=5"):
            gan.train_variant("vanilla", 0, steps=5, snapshots=2)


class ExampleTest(testing.TestCase):
    def test_train_variant(self):
        run = gan.train_variant(
            "unrolled_svmax",
            seed=0,
            steps=4,
            snapshots=2,
            batch_size=32,
            num_samples=50,
            **TINY,
        )
        self.assertEqual([r["step"] for r in run["reports"]], [2, 4])
        self.assertEqual([s for s, _ in run["samples"]], [2, 4])
        self.assertEqual(run["samples"][0][1].shape, (50, 2))
        for report in run["reports"]:
            self.assertBetween(report["modes_covered"], 0, 8)
            self.assertBetween(report["modes_covered_loose"], 0, 8)
            self.assertGreaterEqual(
                report["share_loose"], report["high_quality_share"]
            )

    def test_summarize(self):
        def run(variant, seed, modes):
            reports = [
                {
                    "step": 10,
                    "modes_covered": modes,
                    "high_quality_share": modes / 10,
                    "modes_covered_loose": 8,
                    "share_loose": 0.9,
                }
            ]
            history = {"mean_singular_value": [float(seed)]}
            return {
                "variant": variant,
                "seed": seed,
                "reports": reports,
                "history": history,
            }

        rows = gan.summarize(
            [run("vanilla", 0, 2), run("vanilla", 1, 6), run("svmax", 0, 8)]
        )
        self.assertLen(rows, 2)
        self.assertEqual(rows[0]["modes_mean"], 4.0)
        self.assertEqual(rows[0]["modes_std"], 2.0)
        self.assertAllClose(rows[0]["quality_mean"], 0.4)
        self.assertEqual(rows[0]["s_mu_mean"], 0.5)
        self.assertEqual(rows[1]["modes_per_seed"], [8])
        table = gan.results_table(rows)
        self.assertIn("| vanilla | 10 | 4.0 +/- 2.0 | 40.0 +/- 20.0", table)

    def test_main_writes_table_and_figures(self):
        with tempfile.TemporaryDirectory() as directory:
            rows = gan.main(
                [
                    "--steps=4",
                    "--snapshots=2",
                    "--seeds",
                    "1",
                    "--variants",
                    "vanilla",
                    "unrolled_svmax",
                    "--batch-size=32",
                    "--num-samples=40",
                    "--latent-dim=8",
                    "--hidden=8",
                    f"--output-dir={directory}",
                ]
            )
            self.assertLen(rows, 2 * 2)  # 2 variants x 2 snapshots
            self.assertEqual(rows[0]["seeds"], [1])
            self.assertEqual([row["step"] for row in rows], [2, 4, 2, 4])
            for name in (
                "gan_mixture.png",
                "gan_mixture_coverage.png",
                "results.md",
                "results.json",
            ):
                path = os.path.join(directory, name)
                self.assertGreater(os.path.getsize(path), 100, name)
            with open(os.path.join(directory, "gan_mixture.png"), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
