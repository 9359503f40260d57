"""The GPU check: XLA (Keras' default there) and replicas, then the timings.

Run on a machine with an NVIDIA GPU (never in CI):

    python benchmarks/gpu_check.py            # tests + bench_ops GPU columns
    python benchmarks/gpu_check.py --quick    # tests + two small shapes

1. Asserts that TensorFlow sees a GPU and that Keras resolves
   `jit_compile="auto"` to XLA for a model using `SVMaxRegularizer`.
2. Trains that model on the GPU with the default `jit_compile` (XLA), a
   dynamic batch and a last partial batch, and compares the weights with
   `jit_compile=False` (1e-5).
3. Runs the XLA tests (tests/xla: every public op, regularizer, loss,
   metric, layer and model, XLA against non-XLA, now on the GPU) and the
   MirroredStrategy tests (tests/distribute/test_regularizer_replicas.py,
   on two logical CPUs as in CI).
4. Runs benchmarks/bench_ops.py twice on the GPU, without and with
   `--jit`, writing benchmarks/results/gpu_bench_ops{,_xla}.{md,json,csv}.

Exit status 0 only if every step passed.
"""

import argparse
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def check_default_jit() -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_featreg as kf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        sys.exit("gpu_check: TensorFlow sees no GPU")
    print(f"GPUs: {gpus}", flush=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16)).astype("float32")
    y = rng.normal(size=(40, 8)).astype("float32")

    def train(jit_compile):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((16,)),
                keras.layers.Dense(
                    8,
                    activity_regularizer=kf.regularizers.SVMaxRegularizer(0.1),
                ),
            ]
        )
        kwargs = {} if jit_compile == "auto" else {"jit_compile": jit_compile}
        model.compile("sgd", "mse", **kwargs)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return model

    xla = train("auto")
    if xla.jit_compile is not True:
        sys.exit("gpu_check: jit_compile='auto' did not resolve to XLA")
    plain = train(False)
    for a, b in zip(xla.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    print("default jit_compile on the GPU: XLA, equal to non-XLA", flush=True)


def run(command) -> int:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # XLA's default optimizations on the GPU (tests/conftest.py turns the
    # backend's off for the CPU suite unless XLA_FLAGS is set).
    os.environ.setdefault("XLA_FLAGS", "")
    check_default_jit()
    failures = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "tests/xla",
            "tests/distribute/test_regularizer_replicas.py",
        ]
    )
    quick = ["--quick"] if args.quick else []
    results = ROOT / "benchmarks" / "results"
    for jit in ([], ["--jit"]):
        name = "gpu_bench_ops" + ("_xla" if jit else "")
        failures += run(
            [
                sys.executable,
                "benchmarks/bench_ops.py",
                "--no-memory",
                *quick,
                *jit,
                "--out",
                str(results / name),
            ]
        )
    print("gpu_check:", "FAILED" if failures else "passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
