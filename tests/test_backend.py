"""`import keras_featreg` checks that TensorFlow is installed and is the
Keras backend (in fresh processes)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from keras_featreg import backend
from tests import helpers as testing

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(code, keras_backend="tensorflow", extra_args=()):
    """Runs `code` in a fresh interpreter with `KERAS_BACKEND` set."""
    env = {
        **os.environ,
        "KERAS_BACKEND": keras_backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *extra_args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


class BackendCheckTest(testing.TestCase):
    def test_tensorflow_passes(self):
        backend.check_backend()  # this process runs on TensorFlow
        backend.check_backend("tensorflow")

    def test_other_backends_fail_naming_found_and_required(self):
        for name in ("jax", "torch", "numpy", "openvino"):
            with self.assertRaisesRegex(
                ImportError,
                f"requires the 'tensorflow' Keras backend, but Keras is "
                f"running on the '{name}' backend.*KERAS_BACKEND=tensorflow"
                f".*Received: keras.backend.backend\\(\\)='{name}'$",
            ):
                backend.check_backend(name)

    def test_import_fails_at_import_under_another_backend(self):
        # jax and torch are not installed here, so `import keras` itself
        # would fail under them: make Keras report jax/torch the way
        # `keras.backend.backend()` would, then import the package.
        result = run_python(
            "import keras\n"
            "for name in ('jax', 'torch'):\n"
            "    keras.backend.backend = lambda: name\n"
            "    try:\n"
            "        import keras_featreg\n"
            "    except ImportError as error:\n"
            "        print(error)\n"
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        messages = result.stdout.strip().splitlines()
        self.assertLen(messages, 2)
        for name, message in zip(("jax", "torch"), messages, strict=True):
            self.assertStartsWith(
                message,
                "keras_featreg requires the 'tensorflow' Keras backend, but "
                f"Keras is running on the '{name}' backend.",
            )
            self.assertEndsWith(
                message, f"Received: keras.backend.backend()='{name}'"
            )


# Hides TensorFlow from the import system, as if no distribution of it
# were installed, then imports the package; prints the error and whether
# Keras got imported before it.
HIDE_TENSORFLOW = """
import importlib.machinery
import sys

if sys.argv[1] == "absent":
    # What Python's import system does for a module that is not there.
    sys.modules["tensorflow"] = None
else:
    # A `tensorflow/` left without `__init__.py`: a namespace package.
    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "tensorflow":
                return importlib.machinery.ModuleSpec(
                    name, None, is_package=True
                )
            return None

    sys.meta_path.insert(0, Finder)
try:
    import keras_featreg
except ImportError as error:
    print(error)
print("keras imported:", "keras" in sys.modules)
"""


@pytest.mark.parametrize("case", ["absent", "namespace"])
def test_import_without_tensorflow_names_the_fix(case):
    result = run_python(HIDE_TENSORFLOW, extra_args=[case])
    assert result.returncode == 0, result.stderr
    message, keras_imported = result.stdout.strip().splitlines()
    assert message.startswith(
        "keras_featreg needs TensorFlow (its Keras backend), and no "
        "TensorFlow is installed: `pip install keras-featreg` brings none"
    )
    assert '`pip install "keras-featreg[cpu]"`' in message
    assert '`pip install "keras-featreg[gpu]"`' in message
    assert '`pip install -e ".[cpu]"`' in message
    received = "Received: importlib.util.find_spec('tensorflow')="
    if case == "absent":
        assert message.endswith(received + "None")
    else:
        assert received + "ModuleSpec(name='tensorflow'" in message
    # The check runs before Keras, whose own error would not say it.
    assert keras_imported == "keras imported: False"


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_real_backend_fails_at_import(name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed: the patched-backend test runs")
    result = run_python("import keras_featreg", keras_backend=name)
    assert result.returncode != 0
    assert (
        f"keras.backend.backend()='{name}'"
        in result.stderr.strip().splitlines()[-1]
    )
