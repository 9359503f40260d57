"""Time and peak memory of whole-test-set evaluation at SOP scale.

Stanford Online Products' test set is 60,502 images of 11,316 products; the
default case is 60,000 synthetic 512-d embeddings in 11,316 classes (5 or 6
samples each): unit class centers plus Gaussian noise of norm ~`--noise`,
L2-normalized, seeded. Two jobs, each in two implementations:

- Recall@{1,2,4,8}: `keras_featreg.evaluation.recall_at_k` (exact, NumPy)
  vs the faiss path of pytorch-metric-learning: exact kNN with
  `faiss.IndexFlatL2`, k + 1 neighbours, self dropped;
- NMI: `keras_featreg.evaluation.nmi` (k-means, 20 iterations, random init,
  then NMI) vs `faiss.Kmeans(d, 11316, niter=20)` and
  `index.search(x, 1)`, scored with scikit-learn's
  `normalized_mutual_info_score`. Both NMIs are reported with the geometric
  mean (the SVMax paper's) and the arithmetic mean (scikit-learn's
  default).

Each measurement runs once, in a fresh subprocess that loads the embeddings
from a .npy file (so data generation does not count), then records wall and
CPU time of the call and the process's peak RSS (`resource.getrusage(
RUSAGE_SELF).ru_maxrss`, a high-water mark) and its RSS just before the call
(`/proc/self/status` VmRSS); "peak - before" is what the call added. The
keras_featreg child imports `keras_featreg/evaluation/{retrieval,clustering}`
without running the package `__init__` files, which would load TensorFlow
(~0.5 GB) that this NumPy code does not use; the faiss child imports only
faiss, NumPy and scikit-learn.

The machine is shared: each child also reports the 1-minute load average
before and after its call and the share of the machine's CPUs that OTHER
processes used during the call (from /proc/stat, minus this process's CPU
time), so "how loaded" is measured, not guessed.

Usage:

    python benchmarks/bench_evaluation.py            # SOP size (minutes)
    python benchmarks/bench_evaluation.py --quick    # 6,000 x 512, 1,132
    python benchmarks/bench_evaluation.py --num-samples 20000 \\
        --num-classes 3772 --skip-faiss

Writes `<out>.json` and `<out>.md` (`--out`, default
`benchmarks/results/evaluation`, `..._quick` with --quick).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KS = (1, 2, 4, 8)


def make_data(num_samples, dim, num_classes, noise, seed):
    """Unit class centers + noise (norm ~`noise`), L2-normalized."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_classes, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.permutation(np.arange(num_samples) % num_classes)
    x = np.empty((num_samples, dim), np.float32)
    for start in range(0, num_samples, 8192):  # bounded temporaries
        part = slice(start, start + 8192)
        noise_part = rng.standard_normal((len(labels[part]), dim), np.float32)
        x[part] = centers[labels[part]] + noise / np.sqrt(dim) * noise_part
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


# ---------------------------------------------------------------- children


def _rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def _busy_and_total():
    with open("/proc/stat") as stat:
        fields = [float(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _import_evaluation():
    """keras_featreg's evaluation modules without TensorFlow (see above)."""
    import importlib
    import types

    for name in ("keras_featreg", "keras_featreg.evaluation"):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(ROOT, *name.split("."))]
        sys.modules[name] = package
    return (
        importlib.import_module("keras_featreg.evaluation.retrieval"),
        importlib.import_module("keras_featreg.evaluation.clustering"),
    )


def _faiss_recall(x, labels):
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, found = index.search(x, max(KS) + 1)
    # pytorch-metric-learning's return_results: drop the self match (or
    # the last neighbour when faiss did not return the query itself).
    is_self = found == np.arange(len(x))[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    found = found[~is_self].reshape(len(x), max(KS))
    hits = labels[found] == labels[:, None]
    return {k: float(np.mean(hits[:, :k].any(axis=1))) for k in KS}


def _faiss_nmi(x, labels, num_classes, seed):
    import faiss
    from sklearn.metrics import normalized_mutual_info_score

    kmeans = faiss.Kmeans(x.shape[1], num_classes, niter=20, seed=seed)
    kmeans.train(x)
    _, clusters = kmeans.index.search(x, 1)
    clusters = clusters[:, 0]
    return {
        method: float(
            normalized_mutual_info_score(
                labels, clusters, average_method=method
            )
        )
        for method in ("geometric", "arithmetic")
    }


def child(job, backend, data_path, num_classes, seed):
    data = np.load(data_path)
    x, labels = data["x"], data["labels"]
    if backend == "numpy":
        retrieval, clustering = _import_evaluation()
    else:
        import faiss  # noqa: F401  (import before the clock starts)
        import sklearn.metrics  # noqa: F401

    def run():
        if job == "recall" and backend == "numpy":
            return retrieval.recall_at_k(x, labels, k=KS)
        if job == "recall":
            return _faiss_recall(x, labels)
        if backend == "numpy":
            clusters, _ = clustering.kmeans(x, num_classes, seed=seed)
            return {
                method: clustering.normalized_mutual_information(
                    labels, clusters, method
                )
                for method in ("geometric", "arithmetic")
            }
        return _faiss_nmi(x, labels, num_classes, seed)

    before = _rss_bytes()
    load_before = os.getloadavg()[0]
    busy0, total0 = _busy_and_total()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    busy1, total1 = _busy_and_total()
    ticks = os.sysconf("SC_CLK_TCK")
    others = ((busy1 - busy0) / ticks - cpu) / ((total1 - total0) / ticks)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "job": job,
                "backend": backend,
                "result": {str(k): v for k, v in result.items()},
                "wall_s": wall,
                "cpu_s": cpu,
                "rss_before_bytes": before,
                "peak_rss_bytes": peak,
                "added_bytes": peak - before,
                "loadavg_1min_before": load_before,
                "loadavg_1min_after": os.getloadavg()[0],
                "others_cpu_share": max(others, 0.0),
            }
        )
    )


# ------------------------------------------------------------------ parent


def measure(job, backend, data_path, args):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"{job}:{backend}",
        "--data",
        data_path,
        "--num-classes",
        str(args.num_classes),
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job}:{backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gib(value):
    return f"{value / 2**30:.2f}"


def markdown(config, rows):
    lines = [
        f"Evaluation at n={config['num_samples']}, d={config['dim']}, "
        f"{config['num_classes']} classes (noise {config['noise']}, seed "
        f"{config['seed']}); {config['cpus']} CPUs, {config['machine']}.",
        "",
        "| job | implementation | wall s | CPU s | peak RSS GiB "
        "| added GiB | result | load 1-min before/after | others' CPU "
        "share |",
        "|---|---|---:|---:|---:|---:|---|---|---:|",
    ]
    names = {
        ("recall", "numpy"): "keras_featreg recall_at_k",
        ("recall", "faiss"): "faiss IndexFlatL2 (PML)",
        ("nmi", "numpy"): "keras_featreg kmeans + NMI",
        ("nmi", "faiss"): "faiss.Kmeans niter=20 (PML)",
    }
    for row in rows:
        if row["job"] == "recall":
            result = ", ".join(
                f"R@{k} {v:.4f}" for k, v in row["result"].items()
            )
        else:
            result = (
                f"NMI geometric {row['result']['geometric']:.4f}, "
                f"arithmetic {row['result']['arithmetic']:.4f}"
            )
        lines.append(
            f"| {row['job']} | {names[row['job'], row['backend']]} "
            f"| {row['wall_s']:.1f} | {row['cpu_s']:.1f} "
            f"| {_gib(row['peak_rss_bytes'])} | {_gib(row['added_bytes'])} "
            f"| {result} | {row['loadavg_1min_before']:.2f} / "
            f"{row['loadavg_1min_after']:.2f} "
            f"| {100 * row['others_cpu_share']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--jobs", default="recall,nmi")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job, backend = args.child.split(":")
        return child(job, backend, args.data, args.num_classes, args.seed)

    num_samples = args.num_samples or (6000 if args.quick else 60000)
    args.num_classes = args.num_classes or round(num_samples * 11316 / 60000)
    out = args.out or os.path.join(
        ROOT,
        "benchmarks",
        "results",
        "evaluation_quick" if args.quick else "evaluation",
    )
    backends = ["numpy"]
    if not args.skip_faiss:
        try:
            import faiss  # noqa: F401

            backends.append("faiss")
        except ImportError:
            print("faiss is not installed: skipping its rows")
    x, labels = make_data(
        num_samples, args.dim, args.num_classes, args.noise, args.seed
    )
    config = {
        "num_samples": num_samples,
        "dim": args.dim,
        "num_classes": args.num_classes,
        "noise": args.noise,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_at_start": os.getloadavg(),
    }
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        data_path = os.path.join(directory, "embeddings.npz")
        np.savez(data_path, x=x, labels=labels)
        del x, labels
        for job in args.jobs.split(","):
            for backend in backends:
                row = measure(job, backend, data_path, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    config["loadavg_at_end"] = os.getloadavg()
    table = markdown(config, rows)
    print(table)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".json", "w") as file:
        json.dump({"config": config, "rows": rows}, file, indent=2)
    with open(out + ".md", "w") as file:
        file.write(table)


if __name__ == "__main__":
    main()
