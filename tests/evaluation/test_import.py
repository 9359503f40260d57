"""`keras_featreg.evaluation` imports without TensorFlow (issue 11.7).

The NumPy evaluation (recall@k, NMI, k-means, k-NN, mode coverage) must not
pull in TensorFlow and Keras (~5 s and ~700 MB): the functions that need
them import them when called. `keras_featreg/__init__.py` imports every
subpackage (TensorFlow included), so the check loads the evaluation
package under a bare `keras_featreg` package module, as
benchmarks/bench_evaluation.py does.
"""

import pathlib
import textwrap

from tests import helpers as testing

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    import types

    import numpy as np

    package = types.ModuleType("keras_featreg")
    package.__path__ = [sys.argv[1] + "/keras_featreg"]
    sys.modules["keras_featreg"] = package

    from keras_featreg import evaluation

    x = np.random.default_rng(0).normal(size=(40, 4))
    labels = np.arange(40) % 4
    evaluation.recall_at_k(x, labels)
    evaluation.nmi(x, labels)
    evaluation.map_at_r(x, labels)
    evaluation.r_precision(x, labels)
    evaluation.knn_accuracy(x, labels, x, labels, k=3)
    heavy = sorted({"tensorflow", "keras"} & set(sys.modules))
    print("imported:", heavy)
    """
)


class ImportTest(testing.TestCase):
    def test_evaluation_imports_without_tensorflow(self):
        result = testing.run_python(
            ["-c", SCRIPT, str(ROOT)], cwd=ROOT, timeout=120
        )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertIn("imported: []", result.stdout)
