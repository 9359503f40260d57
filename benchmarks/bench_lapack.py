"""How far s_mu is from LAPACK, and what bounds it: TF's kernels vs NumPy's.

`mean_singular_value` forward+backward against the LAPACK floor, NumPy's
`svd` with vectors (value and gradient U V^T / k from one call), on the
paper's shape b = 144, d = 128, random and nearly collapsed unit-row
batches (as `bench_ops.py`); then the kernels our routes spend their time
in, TensorFlow's against NumPy's (LAPACK) on the same matrices: the float64
`eigh` of the 128 x 128 Gram matrix, the float32 and float64 SVD of x, and
the float64 Gram matrix product. NumPy runs single-threaded
(OPENBLAS_NUM_THREADS=1 unless set). All timed interleaved in one process
(`benchmarks/timing.py`). Writes `benchmarks/results/lapack.{md,json}`.

    python benchmarks/bench_lapack.py [--rounds 41] [--shape 144x128]
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# NumPy's LAPACK on one thread (set before NumPy loads): OpenBLAS' threads
# spin-wait, and on a shared 2-core machine its 2-thread SVD of a 144 x 128
# matrix took 100-900 ms instead of a few ms.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ops import BATCHES  # noqa: E402
from bench_ops import load_average  # noqa: E402
from bench_ops import machine_description  # noqa: E402
from bench_ops import make_batches  # noqa: E402
from bench_ops import make_step  # noqa: E402
from timing import interleaved  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def numpy_value_and_gradient(x):
    left, singular, right = np.linalg.svd(x, full_matrices=False)
    return singular.mean(), left @ right / min(x.shape)


def tensorflow_kernel(fn, argument):
    function = tf.function(fn)
    argument = tf.constant(argument)

    def run():
        return tf.nest.map_structure(lambda t: t.numpy(), function(argument))

    return run


def measure(x, rounds):
    b, d = x.shape
    ours = make_step("mean_singular_value", "ours", b, d)
    inputs = (tf.constant(x), tf.constant(x))
    x64 = x.astype(np.float64)
    tall = x64 if b >= d else x64.T
    gram = tall.T @ tall
    runs = {
        "ours": lambda: [t.numpy() for t in ours(*inputs)],
        "numpy svd float32": lambda: numpy_value_and_gradient(x),
        "numpy svd float64": lambda: numpy_value_and_gradient(x64),
        "tf eigh float64 (Gram)": tensorflow_kernel(tf.linalg.eigh, gram),
        "numpy eigh float64 (Gram)": lambda: np.linalg.eigh(gram),
        "tf svd float32": tensorflow_kernel(tf.linalg.svd, x),
        "numpy svd float32 (kernel)": lambda: np.linalg.svd(x),
        "tf svd float64": tensorflow_kernel(tf.linalg.svd, x64),
        "tf Gram float64": tensorflow_kernel(
            lambda m: tf.matmul(m, m, transpose_a=True), tall
        ),
        "numpy Gram float64": lambda: tall.T @ tall,
    }
    for run in runs.values():  # trace and warm up
        run()
        run()
    summary, _ = interleaved(runs, rounds, "numpy svd float32", "ours")
    return summary


def markdown(report):
    machine = report["machine"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores; TensorFlow "
        f"{machine['tensorflow']}, NumPy {machine['numpy']}; b x d = "
        f"{report['shape']}; {report['rounds']} interleaved rounds; load "
        f"average {report['load_start']} at start, {report['load_end']} at "
        "end. Median ms; `ours` is forward+backward of "
        "`mean_singular_value` (tf.function), `numpy svd` returns the value "
        "and the gradient U V^T / k from one LAPACK SVD with vectors.",
        "",
        "| what | " + " | ".join(report["batches"]) + " |",
        "| --- |" + " --- |" * len(report["batches"]),
    ]
    names = [key[:-3] for key in report["rows"][0] if key.endswith("_ms")]
    for name in names:
        cells = [f"{row[name + '_ms']:.2f}" for row in report["rows"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [
        f"{row['ratio']:.2f} [{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]"
        for row in report["rows"]
    ]
    lines.append(
        "| numpy svd float32 / ours (median [min, max] per round) | "
        + " | ".join(cells)
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--shape", default="144x128")
    parser.add_argument("--out", default=os.path.join(RESULTS, "lapack"))
    args = parser.parse_args(argv)
    b, d = (int(v) for v in args.shape.lower().split("x"))
    batches = make_batches(b, d)
    report = {
        "machine": machine_description(),
        "shape": f"{b}x{d}",
        "rounds": args.rounds,
        "load_start": load_average(),
        "batches": list(BATCHES),
        "rows": [measure(batches[name][0], args.rounds) for name in BATCHES],
    }
    report["load_end"] = load_average()
    text = markdown(report)
    with open(args.out + ".md", "w") as file:
        file.write(text)
    with open(args.out + ".json", "w") as file:
        json.dump(report, file, indent=1)
    print(text)


if __name__ == "__main__":
    main()
