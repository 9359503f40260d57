"""metric_learning.py's table reports MAP@R and R-precision (issue 10)."""

from tests import helpers as testing
from tests.examples.common import load_example

metric_learning = load_example("metric_learning")


def run(method, recall_1, map_at_r, finite=True):
    return {
        "loss": "contrastive",
        "method": method,
        "lr": 0.01,
        "finite": finite,
        "nmi": 0.5,
        "recall": {1: recall_1, 2: 0.6, 4: 0.7, 8: 0.8},
        "map_at_r": map_at_r,
        "r_precision": map_at_r + 0.1,
        "mean_singular_value": 0.3,
    }


class ResultsTableTest(testing.TestCase):
    def test_map_at_r_and_r_precision_columns(self):
        results = [run("vanilla", 0.5, 0.2), run("svmax", 0.55, 0.25)]
        header, rows = metric_learning.results_table(results, [0.01])
        self.assertEqual(
            header,
            [
                "Loss",
                "Method",
                "NMI lr=0.01",
                "R@1 lr=0.01",
                "R@8 lr=0.01",
                "ΔR@1 lr=0.01",
                "MAP@R lr=0.01",
                "RP lr=0.01",
                "s_mu lr=0.01",
            ],
        )
        self.assertEqual(
            rows[1],
            [
                "contrastive",
                "svmax",
                "0.500",
                "55.00",
                "80.00",
                "+5.00",
                "25.00",
                "35.00",
                "0.30",
            ],
        )

    def test_diverged_run_fills_every_column(self):
        results = [run("vanilla", 0.5, 0.2, finite=False)]
        header, rows = metric_learning.results_table(results, [0.01])
        self.assertLen(rows[0], len(header))
