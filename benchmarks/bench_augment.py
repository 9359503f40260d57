"""Throughput of the VICReg two-view tf.data pipeline on this machine's CPU.

`keras_featreg.data.two_view_dataset` on random uint8 images (the cost does
not depend on the content): batch, then both views' augmentation
(`vicreg_augmenter(view=1)` and `view=2`) in parallel `map`s, then
`prefetch`. Reports source images per second (each gives two views) after
a warm-up, for 28x28x1 (digits), 96x96x3 (STL-10) and 224x224x3 (ImageNet
crops), output size = input size.

    python benchmarks/bench_augment.py [--seconds 20] [--warmup 3]
        [--sizes 28x1 96x3 224x3] [--batch-size 128]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import timing  # noqa: E402  (benchmarks/timing.py)
from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)

from keras_featreg.data.augmentations import two_view_dataset  # noqa: E402


def measure(size, channels, batch_size, seconds, warmup, num_images):
    rng = np.random.default_rng(0)
    images = rng.integers(
        0, 256, size=(num_images, size, size, channels), dtype=np.uint8
    )
    dataset = two_view_dataset(
        images, batch_size=batch_size, image_size=size, seed=0
    ).repeat()
    iterator = iter(dataset)
    start = time.perf_counter()
    for _ in range(warmup):  # tracing, autotuning, buffers
        next(iterator)
    first = time.perf_counter() - start
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        view_a, _ = next(iterator)
        count += int(view_a.shape[0])
    elapsed = time.perf_counter() - start
    return count / elapsed, count, first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sizes", nargs="+", default=["28x1", "96x3", "224x3"])
    parser.add_argument(
        "--out",
        default=os.path.join(timing.RESULTS, "augment.md"),
        help="results file (what is printed)",
    )
    args = parser.parse_args(argv)

    with timing.printed_to(args.out):
        print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores")
        print(f"TensorFlow {tf.__version__}, batch size {args.batch_size}")
        print(f"load average before: {os.getloadavg()}")
        print("| input | images/s (pairs) | views/s | warm-up s | images |")
        print("| --- | --- | --- | --- | --- |")
        for spec in args.sizes:
            size, channels = (int(v) for v in spec.split("x"))
            num_images = max(args.batch_size * 4, 64 * 1024 // (size * size))
            rate, count, first = measure(
                size,
                channels,
                args.batch_size,
                args.seconds,
                args.warmup,
                num_images,
            )
            print(
                f"| {size}x{size}x{channels} | {rate:.0f} | {2 * rate:.0f} | "
                f"{first:.1f} | {count} |"
            )
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
