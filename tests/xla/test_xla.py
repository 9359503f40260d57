"""Every public op, regularizer, loss, metric, layer and model under XLA.

`jit_compile=True` is what Keras' `jit_compile="auto"` gives `fit` on a GPU;
a CPU-only suite never compiles with XLA unless it asks. Each group of
tests/xla/cases.py runs in its own subprocess (an XLA failure can abort the
process): values, gradients, `fit` histories, `evaluate`, `predict` and the
trained weights must equal the `jit_compile=False` run to 1e-5 (relative)
and be finite, with a dynamic batch and a last partial batch.
"""

import fcntl
import json
import os
import pathlib
import subprocess
import sys
import warnings

import keras
import pytest

from keras_featreg import data
from keras_featreg import layers
from keras_featreg import losses
from keras_featreg import models
from tests.xla import cases

ROOT = pathlib.Path(__file__).resolve().parents[2]
_RESULTS = {}


def _run_group(group: str, shared: pathlib.Path) -> dict:
    """The group's results, computed once for all pytest-xdist workers."""
    if group in _RESULTS:
        return _RESULTS[group]
    path = shared / f"xla-{group}.json"
    with open(shared / f"xla-{group}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait
        if not path.exists():
            path.write_text(json.dumps(_subprocess_results(group)))
    _RESULTS[group] = json.loads(path.read_text())
    return _RESULTS[group]


def _subprocess_results(group: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.run(
        [sys.executable, "-m", "tests.xla.cases", group],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = {}
    for line in process.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["case"]] = record["problem"]
    results["__returncode__"] = process.returncode
    results["__stderr__"] = process.stderr[-3000:]
    return results


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id):
    """A directory shared by the xdist workers of this session."""
    if worker_id == "master":
        return tmp_path_factory.getbasetemp()
    return tmp_path_factory.getbasetemp().parent


# One xdist worker per group (`--dist loadgroup`, pyproject.toml): the other
# worker runs other tests meanwhile instead of waiting for the group's lock.
PARAMS = [
    pytest.param(
        group,
        name,
        id=f"{group}-{name}",
        marks=pytest.mark.xdist_group(f"xla-{group}"),
    )
    for group, build in cases.GROUPS.items()
    for name in build()
]


@pytest.mark.parametrize("group,name", PARAMS)
def test_equal_to_the_non_xla_path(group, name, shared_dir):
    results = _run_group(group, shared_dir)
    if name not in results:
        pytest.fail(
            f"case {name} did not report (process exit code "
            f"{results['__returncode__']}):\n{results['__stderr__']}"
        )
    assert results[name] is None, results[name]


def test_augmenters_turn_xla_off():
    """Layers XLA cannot compile say so: Keras then trains without XLA."""
    encoder = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4)])
    model = models.TwoViewModel(
        encoder,
        layers.build_projector((4, 4)),
        loss=losses.VICRegLoss(),
        augmenter=data.vicreg_augmenter(8),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="sgd", jit_compile=True)
    assert model.jit_compile is False
    assert any("jit_compile" in str(w.message) for w in caught)
