"""Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy).

Each test launches tests/distribute/multiworker_job.py as two workers with
`launch_local` and compares their final weights with one process running
Keras `fit` on the same global batches.
"""

import os

import numpy as np

from keras_featreg.distribute import launch
from tests import helpers as testing
from tests.distribute.multiworker_job import build_model
from tests.distribute.multiworker_job import global_batches

JOB = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "multiworker_job.py"
)
TIMEOUT = 150  # seconds per start; a hung collective fails the test


def one_process(name):
    model = build_model(name)
    model.fit(global_batches(name), epochs=2, verbose=0, shuffle=False)
    return [np.asarray(w) for w in model.weights]


def worker_weights(out, index):
    with np.load(os.path.join(out, f"worker_{index}.npz")) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def start_step(out, restart, index):
    with open(os.path.join(out, f"start_{restart}_{index}.txt")) as file:
        return int(file.read())


def environment():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env


class MultiWorkerTest(testing.TestCase):
    def assertSameWeights(self, got, expected, atol):
        self.assertLen(got, len(expected))
        for a, b in zip(got, expected, strict=True):
            self.assertAllClose(a, b, atol=atol, rtol=0)

    def test_two_workers_match_one_process(self):
        # Triplet loss mined on the global batch + SVMax of the global batch.
        out = self.get_temp_dir()
        code = launch.launch_local(
            [JOB, "--model", "metric", "--out", out],
            num_workers=2,
            timeout=TIMEOUT,
            env=environment(),
        )
        self.assertEqual(code, 0)
        first, second = worker_weights(out, 0), worker_weights(out, 1)
        self.assertSameWeights(first, second, atol=0)  # identical
        self.assertSameWeights(first, one_process("metric"), atol=1e-5)

    def test_killed_worker_resumes_from_its_checkpoint(self):
        # VICReg TwoViewModel; checkpoints at steps 2, 4, 6, 8. Worker 1 is
        # SIGKILLed after step 5; the launcher stops worker 0 and restarts
        # both, which resume at step 4.
        out = self.get_temp_dir()
        checkpoints = os.path.join(out, "checkpoints")
        code = launch.launch_local(
            [JOB, "--model", "vicreg", "--out", out]
            + ["--checkpoint-dir", checkpoints, "--checkpoint-every", "2"]
            + ["--kill-worker", "1", "--kill-at-step", "5"],
            num_workers=2,
            max_restarts=1,
            timeout=TIMEOUT,
            env=environment(),
        )
        self.assertEqual(code, 0)
        self.assertEqual([start_step(out, 0, i) for i in (0, 1)], [0, 0])
        self.assertEqual([start_step(out, 1, i) for i in (0, 1)], [4, 4])
        self.assertEqual(
            sorted(n for n in os.listdir(checkpoints) if n.endswith(".index")),
            ["ckpt-4.index", "ckpt-6.index", "ckpt-8.index"],
        )
        first, second = worker_weights(out, 0), worker_weights(out, 1)
        self.assertSameWeights(first, second, atol=0)
        self.assertSameWeights(first, one_process("vicreg"), atol=1e-5)
