"""Interleaved timing, shared by the benchmarks.

Timing two things one after the other on a shared machine compares two
different loads. Here they alternate, in one process, the order rotating
between rounds, and each round gives one ratio: the median of the per-round
ratios is robust to load that drifts during the run.
"""

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable


def timed(run: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call of `run` (which must block until done)."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def interleaved(
    runs: dict[str, Callable[[], object]],
    rounds: int,
    numerator: str,
    denominator: str,
) -> tuple[dict, dict]:
    """Times `runs` in `rounds` rounds; the order rotates between rounds.

    Args:
        runs: `{name: zero-argument callable}`; each call must block until
            its work is done (convert outputs to NumPy).
        rounds: Number of rounds (one call of each run per round).
        numerator, denominator: Names in `runs`; the ratio of a round is
            `time[numerator] / time[denominator]` (e.g. reference / ours:
            > 1 means ours is faster).

    Returns:
        `(summary, outputs)`: `summary` has `rounds`, `<name>_ms` (median
        milliseconds of each run), `ratio` (median of the per-round
        ratios), `ratio_min` and `ratio_max`; `outputs` maps each name to
        the result of its last call.
    """
    names = list(runs)
    times = {name: [] for name in names}
    outputs = {}
    ratios = []
    for index in range(rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        if index % 2:
            order = order[::-1]
        seconds = {}
        for name in order:
            seconds[name], outputs[name] = timed(runs[name])
            times[name].append(seconds[name])
        ratios.append(seconds[numerator] / seconds[denominator])
    summary = {"rounds": rounds}
    for name in names:
        summary[f"{name}_ms"] = 1e3 * statistics.median(times[name])
    summary["ratio"] = statistics.median(ratios)
    summary["ratio_min"] = min(ratios)
    summary["ratio_max"] = max(ratios)
    return summary, outputs


def rounds_for(budget_s: float, seconds_per_round: float, most: int) -> int:
    """Rounds that fit `budget_s`, between 3 and `most`."""
    return int(min(most, max(3, budget_s // max(seconds_per_round, 1e-9))))


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def printed_to(path: str):
    """Also writes what is printed inside the block to `path` (a results
    file under benchmarks/results/, rewritten on each run)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as file:
        with contextlib.redirect_stdout(_Tee(sys.stdout, file)):
            yield


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
