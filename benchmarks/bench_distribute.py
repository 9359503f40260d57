"""Distributed training on CPU: the two-worker loop and the global gather.

1. `loop`: one process (the default strategy) against two workers on
   127.0.0.1 (`MultiWorkerMirroredStrategy`, started with
   `keras_featreg.distribute.launch.launch_local`), both trained by
   `DistributedTrainer` on the same global batches. Each process gets
   `cores / processes` intra-op threads, so both use the same cores. Fresh
   processes, alternated over `--repeats` rounds; the median is reported
   (the machine may be shared).
2. `gather`: one process, `MirroredStrategy` over two logical CPUs, the
   same train step with batch statistics on the global batch
   (`gather=True`) and per replica (`gather=False`), timed in alternating
   blocks of `--block` steps over `--pairs` pairs; the median of the
   per-pair ratios is reported.

Workloads: `vicreg`, an MLP encoder (784 -> 512) and VICReg's projector
(512-512-512, synchronized BatchNorm) trained by `TwoViewModel` with
`VICRegLoss`; `metric`, an MLP embedding (784 -> 512 -> 128, L2-normalized)
with `RegularizedLoss(TripletLoss(), SVMaxRegularizer())`. Global batch 256
of random inputs; SGD with momentum.

    python benchmarks/bench_distribute.py [--repeats 5] [--steps 20]
        [--pairs 10] [--block 10] [--batch-size 256] [--out results.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WORKLOADS = ("vicreg", "metric")


# One measurement (runs in its own process) ---------------------------------


def make_data(workload, batch_size, steps):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    rows = batch_size * 4
    x = rng.normal(size=(rows, 784)).astype("float32")
    if workload == "vicreg":
        data = (x, (x + 0.1 * rng.normal(size=x.shape)).astype("float32"))
    else:
        data = (x, (np.arange(rows) % 32).astype("int32"))
    dataset = tf.data.Dataset.from_tensor_slices(data)
    return dataset.batch(batch_size, drop_remainder=True).repeat().take(steps)


def build_model(workload, gather=True):
    import keras

    from keras_featreg import layers
    from keras_featreg import losses
    from keras_featreg import models
    from keras_featreg import regularizers
    from keras_featreg.losses.regularized import RegularizedLoss

    keras.utils.set_random_seed(0)
    if workload == "vicreg":
        encoder = keras.Sequential(
            [keras.Input((784,)), keras.layers.Dense(512, activation="relu")]
        )
        projector = layers.build_projector((512, 512, 512), synchronized=True)
        model = models.TwoViewModel(
            encoder,
            projector,
            loss=losses.VICRegLoss(gather=gather),
            track_terms=False,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        return model
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(128),
            keras.layers.UnitNormalization(),
        ]
    )
    loss = RegularizedLoss(
        losses.TripletLoss(margin=0.2),
        regularizers.SVMaxRegularizer(factor=0.1),
        gather=gather,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss)
    return model


class Timer:
    """A Keras callback timing the steps after the first `warmup`."""

    def __new__(cls, warmup):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.count = 0
                self.began = None
                self.seconds = None

            def on_train_batch_end(self, batch, logs=None):
                self.count += 1
                if self.count == warmup:
                    self.began = time.perf_counter()

            def on_train_end(self, logs=None):
                self.seconds = time.perf_counter() - self.began

        return _Timer()


def measure_loop(args) -> dict:
    """One run of `DistributedTrainer` (this process is one worker)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from keras_featreg import distribute

    strategy = distribute.get_strategy(args.strategy)
    steps = args.warmup + args.steps
    dataset = make_data(args.workload, args.batch_size, steps)
    with strategy.scope():
        model = build_model(args.workload)
    timer = Timer(args.warmup)
    trainer = distribute.DistributedTrainer(model)
    trainer.fit(
        dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer]
    )
    return {
        "samples_per_s": args.steps * args.batch_size / timer.seconds,
        "is_chief": distribute.is_chief(strategy),
    }


def measure_gather(args) -> dict:
    """Global against per-replica statistics, interleaved in one process."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from keras_featreg import distribute

    strategy = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
    dataset = make_data(args.workload, args.batch_size, 1).repeat()
    steps = {}
    for gather in (True, False):
        with strategy.scope():
            model = build_model(args.workload, gather=gather)
        trainer = distribute.DistributedTrainer(model)
        trainer.build(dataset)
        function = trainer._make_train_function()
        iterator = iter(trainer._distribute(dataset, 0))
        for _ in range(args.warmup):
            function(iterator)
        steps[gather] = (function, iterator)

    def block(gather):
        function, iterator = steps[gather]
        began = time.perf_counter()
        for _ in range(args.block):
            logs = function(iterator)
        float(next(iter(logs.values())))
        return (time.perf_counter() - began) / args.block

    times = {True: [], False: []}
    for pair in range(args.pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        for gather in order:
            times[gather].append(block(gather))
    ratios = [g / r for g, r in zip(times[True], times[False], strict=True)]
    return {
        "global_samples_per_s": args.batch_size / median(times[True]),
        "replica_samples_per_s": args.batch_size / median(times[False]),
        "global_over_replica_time": median(ratios),
        "is_chief": True,
    }


def worker_main(args) -> int:
    if args.section == "loop":
        result = measure_loop(args)
    else:
        result = measure_gather(args)
    if result.pop("is_chief"):
        with open(args.result, "w") as file:
            json.dump(result, file)
    return 0


# The driver ---------------------------------------------------------------


def run_measurement(args, workers=1, **options) -> dict:
    from keras_featreg.distribute import launch

    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        command = [os.path.abspath(__file__), "--worker", "--result", result]
        for key in ("steps", "warmup", "batch_size", "pairs", "block"):
            command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_CONFIG", None)
        if workers == 1:
            code = subprocess.call([sys.executable, *command], env=env)
        else:
            code = launch.launch_local(
                command, workers, timeout=600, env=env, prefix_output=False
            )
        if code != 0:
            raise RuntimeError(f"measurement {options} failed: {code}")
        with open(result) as file:
            return json.load(file)


def median(values):
    return statistics.median(values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--sections", default="loop,gather")
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)),
            "results",
            "distribute.json",
        ),
        help="results file (JSON)",
    )
    # One measurement (internal).
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--result")
    parser.add_argument("--section", choices=("loop", "gather"))
    parser.add_argument("--workload", choices=WORKLOADS, default="vicreg")
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)

    cores = os.cpu_count() or 1
    sections = args.sections.split(",")
    results = []
    for workload in args.workloads.split(","):
        if "loop" in sections:
            rounds = {1: [], 2: []}
            for repeat in range(args.repeats):
                for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                    result = run_measurement(
                        args,
                        workers=workers,
                        section="loop",
                        workload=workload,
                        strategy="default" if workers == 1 else "multiworker",
                        threads=max(cores // workers, 1),
                    )
                    rounds[workers].append(result["samples_per_s"])
                    print(
                        f"{workload} loop, {workers} process(es), round "
                        f"{repeat + 1}: {result['samples_per_s']:.0f} "
                        "samples/s",
                        flush=True,
                    )
            ratios = [m / s for s, m in zip(rounds[1], rounds[2], strict=True)]
            results.append(
                {
                    "workload": workload,
                    "section": "loop",
                    "one_process_samples_per_s": median(rounds[1]),
                    "two_workers_samples_per_s": median(rounds[2]),
                    "two_over_one": median(ratios),
                    "rounds": rounds,
                }
            )
        if "gather" in sections:
            result = run_measurement(args, section="gather", workload=workload)
            print(f"{workload} gather: {result}", flush=True)
            results.append(
                {"workload": workload, "section": "gather", **result}
            )
    load = os.getloadavg()
    print(
        f"\nCPU: {cores} cores ({cpu_name()}), load average {load[0]:.1f} "
        f"at the end; global batch {args.batch_size}\n"
    )
    print("| workload | one process | two workers | two / one |")
    print("|---|---:|---:|---:|")
    for row in results:
        if row["section"] == "loop":
            print(
                f"| {row['workload']} | "
                f"{row['one_process_samples_per_s']:.0f} samples/s | "
                f"{row['two_workers_samples_per_s']:.0f} samples/s | "
                f"{row['two_over_one']:.2f} |"
            )
    print()
    print("| workload | global gather | per replica | time global / replica |")
    print("|---|---:|---:|---:|")
    for row in results:
        if row["section"] == "gather":
            print(
                f"| {row['workload']} | "
                f"{row['global_samples_per_s']:.0f} samples/s | "
                f"{row['replica_samples_per_s']:.0f} samples/s | "
                f"{row['global_over_replica_time']:.2f} |"
            )
    if args.out:
        with open(args.out, "w") as file:
            json.dump(
                {
                    "cores": cores,
                    "cpu": cpu_name(),
                    "load_average_at_end": load,
                    "batch_size": args.batch_size,
                    "results": results,
                },
                file,
                indent=2,
            )
    return 0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
