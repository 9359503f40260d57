"""metric_learning.py's table: NMI, R@1, R@8, paired ΔR@1, MAP@R and
R-precision (issue 10), and s_mu, as mean +/- std over seeds."""

import numpy as np

from tests import helpers as testing
from tests.examples.common import load_example

metric_learning = load_example("metric_learning")


def run(method, seed, recall_1, map_at_r=0.2, finite=True, lr=0.01):
    result = {"loss": "contrastive", "method": method, "lr": lr, "seed": seed}
    if finite:
        result.update(
            nmi=0.5 + 0.1 * seed,
            recall_1=recall_1,
            recall_8=0.8,
            map_at_r=map_at_r,
            r_precision=map_at_r + 0.1,
            mean_singular_value=0.3,
        )
    return result


class ResultsTableTest(testing.TestCase):
    def test_mean_std_columns_and_paired_delta(self):
        runs = [
            run("vanilla", 0, 0.50),
            run("vanilla", 1, 0.60),
            run("svmax", 0, 0.55, map_at_r=0.25),
            run("svmax", 1, 0.61, map_at_r=0.35),
        ]
        header, rows = metric_learning.results_table(runs)
        self.assertEqual(
            header,
            [
                "loss",
                "method",
                "lr",
                "NMI",
                "R@1",
                "R@8",
                "ΔR@1",
                "MAP@R",
                "R-prec.",
                "s_mu",
                "runs",
            ],
        )
        # Seed by seed: svmax - vanilla = +5 and +1 points.
        deltas = np.array([5.0, 1.0])
        delta = f"{deltas.mean():.2f} +/- {deltas.std(ddof=1):.2f}"
        maps = np.array([25.0, 35.0])
        self.assertEqual(
            rows[1],
            [
                "contrastive",
                "svmax",
                "0.01",
                f"0.550 +/- {np.std([0.5, 0.6], ddof=1):.3f}",
                f"58.00 +/- {np.std([55.0, 61.0], ddof=1):.2f}",
                "80.00 +/- 0.00",
                delta,
                f"30.00 +/- {maps.std(ddof=1):.2f}",
                f"40.00 +/- {maps.std(ddof=1):.2f}",
                "0.30 +/- 0.00",
                "2/2",
            ],
        )
        self.assertEqual(rows[0][6], "-")  # vanilla has no ΔR@1

    def test_diverged_run_is_counted_and_left_out(self):
        runs = [
            run("vanilla", 0, 0.5),
            run("svmax", 0, 0.6),
            run("svmax", 1, 0.0, finite=False),
        ]
        header, rows = metric_learning.results_table(runs)
        self.assertLen(rows[1], len(header))
        self.assertEqual(rows[1][4], "60.00 +/- 0.00")
        self.assertEqual(rows[1][6], "10.00 +/- 0.00")  # seed 0 only
        self.assertEqual(rows[1][-1], "1/2")
        header, rows = metric_learning.results_table(
            [run("vanilla", 0, 0.0, finite=False)]
        )
        self.assertEqual(rows[0][3:], ["-"] * 7 + ["0/1"])

    def test_rows_per_learning_rate(self):
        runs = [run("vanilla", 0, 0.5, lr=lr) for lr in (0.01, 0.001)]
        _, rows = metric_learning.results_table(runs)
        self.assertEqual([row[2] for row in rows], ["0.01", "0.001"])
