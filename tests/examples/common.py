"""Imports an example script from examples/ as a module."""

import importlib.util
import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    """Imports `examples/<name>.py` (cached in `sys.modules`)."""
    module_name = f"keras_featreg_examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def help_text(name: str) -> str:
    """What `python examples/<name>.py --help` prints."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
