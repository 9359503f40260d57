"""Speed, memory and accuracy of keras_featreg.ops against the references.

Pairs (ours vs the reference formulation the authors' code uses):

- `mean_singular_value` vs `reference_mean_singular_value`
  (`mean(tf.linalg.svd(x, compute_uv=False))`, whose gradient runs a second
  SVD);
- `vicreg_loss` vs `reference_vicreg_loss` (d x d covariance, autodiff);
- `vicreg_covariance` vs `reference_vicreg_covariance` (the term alone).

For every shape `(b, d)`, pair and batch (a random unit-row batch and a
nearly collapsed one: unit rows of a shared row plus 1e-3 noise) it
reports:

- forward+backward time (value and gradient with respect to the inputs,
  both inside `tf.function`): after two warm-up calls each (tracing, and
  the first run of the batch's route), ours and the reference are timed
  interleaved in this one process, the order alternating between pairs
  (`benchmarks/timing.py`); the table gives each side's median and the
  median of the per-pair ratios reference / ours (with their min and max);
- relative error of the value, and of the gradient (Frobenius norm), against
  a NumPy float64 re-derivation evaluated on the same float32 inputs; for
  `mean_singular_value` also the route that fired (see
  `keras_featreg.ops.singular_values.ROUTES`);
- peak memory (for `mean_singular_value` and `vicreg_loss`, random batch;
  the covariance term alone is part of the latter): each side runs in a
  fresh Python process, which first runs the function (dynamic input
  shape) on a 4 x 4 batch, so that tracing, graph optimization and one-off
  allocations are done; then the kernel's peak RSS (VmHWM) is reset to the
  current RSS (/proc/self/clear_refs) and one call runs at the measured
  shape. The figure is how far VmHWM rose above the RSS before that call:
  everything the process touched (TF tensors, Eigen and oneDNN workspaces,
  the outputs). A fresh process matters: TF's oneDNN CPU allocator keeps
  freed memory, so a second call in the same process reuses it and shows
  ~0.

Usage:

    python benchmarks/bench_ops.py                # full run
    python benchmarks/bench_ops.py --quick        # two small shapes
    python benchmarks/bench_ops.py --shapes 512x8192,1024x128 --repeats 5

Writes `<out>.md`, `<out>.json`, `<out>_rows.csv` and `<out>_memory.csv`
(`--out`, default `benchmarks/results/bench_ops`, `..._quick` for --quick).
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_featreg import ops  # noqa: E402
from keras_featreg.ops import singular_values  # noqa: E402
from keras_featreg.ops.scaling import rescale  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import interleaved  # noqa: E402  (benchmarks/timing.py)
from timing import rounds_for  # noqa: E402
from timing import timed  # noqa: E402

SHAPES = (
    (144, 128),
    (512, 512),
    (1024, 128),
    (256, 2048),
    (512, 8192),
    (2048, 8192),
)
QUICK_SHAPES = ((144, 128), (1024, 128))
PAIRS = ("mean_singular_value", "vicreg_loss", "vicreg_covariance")
SIDES = ("ours", "reference")
BATCHES = ("random", "nearly collapsed")
FUNCTIONS = {
    ("mean_singular_value", "ours"): ops.mean_singular_value,
    ("mean_singular_value", "reference"): ops.reference_mean_singular_value,
    ("vicreg_loss", "ours"): ops.vicreg_loss,
    ("vicreg_loss", "reference"): ops.reference_vicreg_loss,
    ("vicreg_covariance", "ours"): ops.vicreg_covariance,
    ("vicreg_covariance", "reference"): ops.reference_vicreg_covariance,
}
TWO_VIEWS = {"vicreg_loss"}
ROUTED = {"mean_singular_value"}


# ----------------------------------------------------------------- inputs


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_batches(batch_size, dim, seed=0):
    """{"random": (z_a, z_b), "nearly collapsed": (z_a, z_b)}, float32.

    Rows are L2-normalized. The nearly collapsed views share one row plus
    independent 1e-3 noise.
    """
    rng = np.random.default_rng(seed)
    shape = (batch_size, dim)
    base = rng.normal(size=(1, dim))
    batches = {
        "random": (
            _unit_rows(rng.normal(size=shape)),
            _unit_rows(rng.normal(size=shape)),
        ),
        "nearly collapsed": (
            _unit_rows(base + 1e-3 * rng.normal(size=shape)),
            _unit_rows(base + 1e-3 * rng.normal(size=shape)),
        ),
    }
    return {
        name: tuple(view.astype(np.float32) for view in views)
        for name, views in batches.items()
    }


# --jit: both sides compiled with XLA.
JIT = False


def make_step(pair, side, batch_size, dim):
    """`tf.function(z_a, z_b) -> (value, gradients...)` for one side."""
    function = FUNCTIONS[(pair, side)]
    two_views = pair in TWO_VIEWS
    spec = tf.TensorSpec((batch_size, dim), tf.float32)

    @tf.function(input_signature=(spec, spec), jit_compile=JIT)
    def step(z_a, z_b):
        with tf.GradientTape() as tape:
            tape.watch(z_a)
            tape.watch(z_b)
            value = function(z_a, z_b) if two_views else function(z_a)
        sources = [z_a, z_b] if two_views else [z_a]
        return (value, *tape.gradient(value, sources))

    return step


# ----------------------------------------------- NumPy float64 references


def numpy_mean_singular_value(x):
    """s_mu and its gradient U V^T / k, from a float64 SVD."""
    left, singular, right = np.linalg.svd(x, full_matrices=False)
    k = min(x.shape)
    return singular.mean(), [left @ right / k]


def _numpy_vicreg_view(z):
    """Variance and covariance terms of one view and their gradients.

    variance = mean(relu(1 - sqrt(var(z, unbiased) + 1e-4)))
    covariance = sum(offdiag(zc^T zc / (n - 1)) ** 2) / d
    """
    n, d = z.shape
    zc = z - z.mean(axis=0)
    std = np.sqrt((zc**2).sum(axis=0) / (n - 1) + 1e-4)
    variance = np.maximum(1.0 - std, 0.0).mean()
    # d/dz of mean(relu(1 - std)); centering's Jacobian leaves zc unchanged.
    variance_grad = -((1.0 - std) > 0).astype(float) / std * zc / ((n - 1) * d)
    cov = zc.T @ zc / (n - 1)
    np.fill_diagonal(cov, 0.0)
    covariance = (cov**2).sum() / d
    covariance_grad = 4.0 * (zc @ cov) / (d * (n - 1))
    return variance, variance_grad, covariance, covariance_grad


def numpy_vicreg_covariance(z):
    _, _, covariance, covariance_grad = _numpy_vicreg_view(z)
    return covariance, [covariance_grad]


def numpy_vicreg_loss(z_a, z_b):
    """25 * invariance + 25 * mean of variances + 1 * sum of covariances."""
    n, d = z_a.shape
    invariance = ((z_a - z_b) ** 2).mean()
    invariance_grad = 2.0 * (z_a - z_b) / (n * d)
    var_a, var_grad_a, cov_a, cov_grad_a = _numpy_vicreg_view(z_a)
    var_b, var_grad_b, cov_b, cov_grad_b = _numpy_vicreg_view(z_b)
    value = 25.0 * invariance + 25.0 * (var_a + var_b) / 2.0 + cov_a + cov_b
    grad_a = 25.0 * invariance_grad + 12.5 * var_grad_a + cov_grad_a
    grad_b = -25.0 * invariance_grad + 12.5 * var_grad_b + cov_grad_b
    return value, [grad_a, grad_b]


def numpy_reference(pair, z_a, z_b):
    z_a = z_a.astype(np.float64)
    z_b = z_b.astype(np.float64)
    if pair == "mean_singular_value":
        return numpy_mean_singular_value(z_a)
    if pair == "vicreg_covariance":
        return numpy_vicreg_covariance(z_a)
    return numpy_vicreg_loss(z_a, z_b)


def relative_errors(outputs, expected_value, expected_grads):
    value = float(outputs[0])
    value_error = abs(value - expected_value) / max(abs(expected_value), 1e-300)
    grads = np.concatenate([np.ravel(g) for g in outputs[1:]])
    expected = np.concatenate([np.ravel(g) for g in expected_grads])
    norm = max(np.linalg.norm(expected), 1e-300)
    return value_error, float(np.linalg.norm(grads - expected) / norm)


# ----------------------------------------------------------------- timing


def _runner(step, inputs):
    """A zero-argument call of `step` that returns its outputs as NumPy."""

    def run():
        return [t.numpy() for t in step(*inputs)]

    return run


# ----------------------------------------------------------------- memory

MEMORY_PAIRS = ("mean_singular_value", "vicreg_loss")


def _status_kib(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _child_memory(pair, side, batch_size, dim):
    """In a fresh process: peak RSS increase of one fwd+bwd call, MiB.

    The function takes a dynamic shape, so that tracing, graph optimization
    and the first run's one-off allocations happen on a 4 x 4 batch first;
    then the kernel's peak RSS (VmHWM) is reset to the current RSS through
    /proc/self/clear_refs (or, where that is not writable, taken as is) and
    one call runs at the measured shape.
    """
    function = FUNCTIONS[(pair, side)]
    two_views = pair in TWO_VIEWS
    spec = tf.TensorSpec((None, None), tf.float32)

    @tf.function(input_signature=(spec, spec))
    def step(z_a, z_b):
        with tf.GradientTape() as tape:
            tape.watch(z_a)
            tape.watch(z_b)
            value = function(z_a, z_b) if two_views else function(z_a)
        sources = [z_a, z_b] if two_views else [z_a]
        return (value, *tape.gradient(value, sources))

    small = tuple(tf.constant(v) for v in make_batches(4, 4)["random"])
    step(*small)[0].numpy()
    inputs = tuple(
        tf.constant(v) for v in make_batches(batch_size, dim)["random"]
    )
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass
    before = _status_kib("VmRSS")
    step(*inputs)[0].numpy()
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024}))


def measure_memory(pair, side, batch_size, dim):
    """Runs `_child_memory` in a fresh Python process."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        pair,
        side,
        str(batch_size),
        str(dim),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        return float("nan")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


# ----------------------------------------------------------------- report


def machine_description():
    inter_op = tf.config.threading.get_inter_op_parallelism_threads()
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "inter_op_threads": inter_op or "default",
    }


def load_average():
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def _fmt_ms(value):
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_mib(value):
    return "-" if np.isnan(value) else f"{value:.1f}"


def _fmt_err(value):
    return f"{value:.1e}"


def markdown(report):
    machine = report["machine"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores; "
        f"TensorFlow {machine['tensorflow']}, NumPy {machine['numpy']}, "
        f"Python {machine['python']}; inter-op threads "
        f"{machine.get('inter_op_threads', 'default')}. Load average "
        "(1/5/15 min) at start "
        f"{report['load_start']}, at end {report['load_end']}; "
        f"wall time {report['wall_s']:.0f} s.",
        "",
        "Forward+backward time (ours vs the reference formulation, "
        "interleaved: the speed-up is the median [min, max] of the per-pair "
        "ratios reference / ours over n pairs) and relative error against "
        "NumPy float64 (value; gradient in the Frobenius norm) on float32 "
        "unit-row batches, random and nearly collapsed:",
        "",
        "| op | b x d | batch | route (ours) | n | ours ms | reference ms "
        "| speed-up | ours value | reference value | ours gradient "
        "| reference gradient |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['op']} | {row['b']}x{row['d']} | {row['batch']} | "
            f"{row['route']} | {row['rounds']} | {_fmt_ms(row['ours_ms'])} | "
            f"{_fmt_ms(row['reference_ms'])} | {row['ratio']:.2f}x "
            f"[{row['ratio_min']:.2f}, {row['ratio_max']:.2f}] | "
            f"{_fmt_err(row['ours_value'])} | "
            f"{_fmt_err(row['reference_value'])} | "
            f"{_fmt_err(row['ours_gradient'])} | "
            f"{_fmt_err(row['reference_gradient'])} |"
        )
    if report["memory"]:
        lines += [
            "",
            "Peak memory of one forward+backward call in a fresh process "
            "(the peak RSS increase), random batch:",
            "",
            "| op | b x d | ours MiB | reference MiB |",
            "| --- | --- | --- | --- |",
        ]
        for row in report["memory"]:
            lines.append(
                f"| {row['op']} | {row['b']}x{row['d']} | "
                f"{_fmt_mib(row['ours_mib'])} | "
                f"{_fmt_mib(row['reference_mib'])} |"
            )
    return "\n".join(lines) + "\n"


def route_of(x):
    if JIT:  # one route under XLA
        return "XLA float64 Gram"
    matrix, _ = rescale(ops.as_matrix(tf.constant(x)))
    route = int(singular_values._decompose(matrix)[-1])
    return singular_values.ROUTES[route]


def measure_row(pair, steps, views, max_repeats, budget_s):
    """Interleaved timing and errors of one op on one batch."""
    inputs = tuple(tf.constant(v) for v in views)
    runs = {side: _runner(steps[side], inputs) for side in SIDES}
    # Warm-up: tracing, the first run of this batch's route; sizes rounds.
    for side in SIDES:
        runs[side]()
    warm = sum(timed(runs[side])[0] for side in SIDES)
    rounds = rounds_for(budget_s, warm, max_repeats)
    row, outputs = interleaved(runs, rounds, "reference", "ours")
    expected_value, expected_grads = numpy_reference(pair, *views)
    for side in SIDES:
        value_error, grad_error = relative_errors(
            outputs[side], expected_value, expected_grads
        )
        row[f"{side}_value"] = value_error
        row[f"{side}_gradient"] = grad_error
    return row


def run(shapes, pairs, max_repeats, budget_s, memory, out=None):
    start = time.time()
    report = {
        "machine": machine_description(),
        "load_start": load_average(),
        "rows": [],
        "memory": [],
    }
    for batch_size, dim in shapes:
        batches = make_batches(batch_size, dim)
        for pair in pairs:
            steps = {
                side: make_step(pair, side, batch_size, dim) for side in SIDES
            }
            for batch in BATCHES:
                views = batches[batch]
                route = route_of(views[0]) if pair in ROUTED else ""
                row = {"op": pair, "b": batch_size, "d": dim, "batch": batch}
                row["route"] = route
                row.update(
                    measure_row(pair, steps, views, max_repeats, budget_s)
                )
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
            if memory and pair in MEMORY_PAIRS:  # after the timing
                row = {"op": pair, "b": batch_size, "d": dim}
                for side in SIDES:
                    row[f"{side}_mib"] = measure_memory(
                        pair, side, batch_size, dim
                    )
                report["memory"].append(row)
        if out:  # what is measured so far survives an interrupted run
            report["load_end"] = load_average()
            report["wall_s"] = time.time() - start
            write(report, out)
    report["load_end"] = load_average()
    report["wall_s"] = time.time() - start
    return report


def write(report, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    text = markdown(report)
    with open(out + ".md", "w") as file:
        file.write(text)
    with open(out + ".json", "w") as file:
        json.dump(report, file, indent=1)
    for key in ("rows", "memory"):
        rows = report[key]
        if not rows:
            continue
        with open(f"{out}_{key}.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return text


def _shape(text):
    batch_size, dim = text.lower().split("x")
    return int(batch_size), int(dim)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shapes",
        type=lambda s: [_shape(part) for part in s.split(",")],
        help="comma-separated BxD list, e.g. 512x8192,1024x128",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=15,
        help="timed pairs per row at most (default 15); rows whose pair "
        "takes longer than --budget/repeats get fewer, at least 3",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="seconds of timed pairs per row (default 20)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shapes 144x128 and 1024x128, at most 5 repeats",
    )
    parser.add_argument(
        "--ops", default=",".join(PAIRS), help="comma-separated subset"
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--jit",
        action="store_true",
        help="compile both sides with XLA (jit_compile=True, Keras' "
        "default for fit on a GPU); implies --no-memory",
    )
    parser.add_argument(
        "--inter-op-threads",
        type=int,
        help="TensorFlow's inter-op threads (default: one per core). 1 runs "
        "one op at a time: the reference's forward and backward SVDs, "
        "independent of each other, then no longer run side by side",
    )
    parser.add_argument("--out", help="output path prefix")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        pair, side, batch_size, dim = args.memory_child
        _child_memory(pair, side, int(batch_size), int(dim))
        return
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(
            args.inter_op_threads
        )
    global JIT
    JIT = args.jit
    if JIT:
        args.no_memory = True
    shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    repeats = min(args.repeats, 5) if args.quick else args.repeats
    pairs = [pair for pair in args.ops.split(",") if pair]
    unknown = sorted(set(pairs) - set(PAIRS))
    if unknown:
        parser.error(f"unknown --ops {unknown}; choose from {PAIRS}")
    default_out = "bench_ops_quick" if args.quick else "bench_ops"
    if JIT:
        default_out += "_xla"
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", default_out
    )
    report = run(
        shapes,
        pairs,
        repeats,
        args.budget,
        memory=not args.no_memory,
        out=out,
    )
    print(write(report, out))


if __name__ == "__main__":
    main()
