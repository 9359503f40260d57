"""Packaging: one TensorFlow per install, extras that match the code, what
the sdist and the wheel carry, and the release files.

The base installs no TensorFlow; the `cpu` and `gpu` extras (alternatives)
pick one, and no other extra brings one. Offline: the package's metadata
comes from `pip install --dry-run --report --no-index --no-deps` on a copy
of the project (the build backend runs, no index is read, nothing is
downloaded). pip cannot resolve the whole dependency tree offline, nor for
another platform, so the tests evaluate each `Requires-Dist` marker for
every combination of extras on Linux x86-64, Linux aarch64 and macOS arm64,
and follow the requirements of the installed dependencies; README's
Installation section gives the online `pip install --dry-run --report`
check.
"""

import ast
import functools
import importlib.metadata
import importlib.util
import itertools
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import keras_featreg
from tests import helpers as testing

ROOT = pathlib.Path(__file__).resolve().parents[1]

ENVIRONMENTS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_machine": "arm64"},
}
# Where the package imports a module of another distribution.
IMPORT_NAMES = {
    "scikit-learn": "sklearn",
    "tensorflow-datasets": "tensorflow_datasets",
    "faiss-cpu": "faiss",
    "pytest-xdist": "xdist",
    "tensorflow-cpu": "tensorflow",
}
# Distributions that install the `tensorflow` package (PyPI names).
TENSORFLOW_DISTRIBUTIONS = frozenset(
    {
        "tensorflow",
        "tensorflow-cpu",
        "tensorflow-gpu",
        "tensorflow-intel",
        "tensorflow-macos",
        "tensorflow-aarch64",
        "tensorflow-cpu-aws",
        "intel-tensorflow",
        "tf-nightly",
        "tf-nightly-cpu",
        "tf-nightly-gpu",
    }
)
# Copied for builds: the project without caches, outputs and VCS data.
IGNORED = shutil.ignore_patterns(
    ".git",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".benchmarks",
    "runs",
    "build",
    "dist",
    "saved_models",
)


def pip_report(project_dir):
    """The metadata pip reports for `project_dir`, read offline."""
    report = os.path.join(tempfile.mkdtemp(), "report.json")
    try:
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--dry-run",
                "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
                "--ignore-installed", "--report", report, str(project_dir),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        with open(report) as f:
            (install,) = json.load(f)["install"]
    finally:
        shutil.rmtree(os.path.dirname(report), ignore_errors=True)
    return install["metadata"]


def metadata_copy(directory):
    """The files the build backend reads for metadata, in `directory`."""
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, directory)
    package = pathlib.Path(directory) / "keras_featreg"
    package.mkdir()
    shutil.copy(ROOT / "keras_featreg" / "version.py", package)
    (package / "__init__.py").touch()
    return directory


def selected(requirements, extras, environment):
    """The requirements an install of `extras` on `environment` asks for."""
    chosen = []
    for requirement in requirements:
        if requirement.marker is None or any(
            requirement.marker.evaluate({**environment, "extra": extra})
            for extra in ("", *extras)
        ):
            chosen.append(requirement)
    return chosen


@functools.cache
def installed_requirements(name):
    """Requirements of the installed distribution `name` (None if absent)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(Requirement(line) for line in dist.requires or ())


def tensorflow_distributions(requirements, extras, environment):
    """TensorFlow distributions in the closure of an install.

    Follows the requirements of every dependency installed here (their
    markers evaluated for the extras asked of them); a dependency that is
    not installed here contributes itself only. TensorFlow itself is not
    followed.
    """
    key = tuple(sorted(environment.items()))
    found = set()
    for requirement in selected(requirements, extras, environment):
        found |= requirement_tensorflow(str(requirement), key)
    return found


@functools.cache
def requirement_tensorflow(requirement, environment):
    """`tensorflow_distributions` of one requirement line (cached)."""
    environment = dict(environment)
    found, seen = set(), set()
    pending = [Requirement(requirement)]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in TENSORFLOW_DISTRIBUTIONS:
            found.add(name)
            continue
        key = (name, tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        nested = installed_requirements(name)
        if nested:
            pending += selected(nested, requirement.extras, environment)
    return frozenset(found)


def quickstart_commands():
    """The shell commands of README's Quickstart block."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()


class PackagingTest(testing.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if importlib.util.find_spec("setuptools") is None:
            raise unittest.SkipTest("the build backend, setuptools, is absent")
        directory = tempfile.mkdtemp()
        try:
            cls.metadata = pip_report(metadata_copy(directory))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        cls.requirements = [
            Requirement(line) for line in cls.metadata["requires_dist"]
        ]
        cls.extras = sorted(cls.metadata["provides_extra"])

    def extra_names(self, extra):
        return {
            canonicalize_name(r.name)
            for r in self.requirements
            if r.marker is not None and r.marker.evaluate({"extra": extra})
        }

    def test_every_install_resolves_one_tensorflow(self):
        self.assertIn("cpu", self.extras)
        self.assertIn("gpu", self.extras)
        # The TensorFlow of `cpu` on each platform: tensorflow-cpu has
        # wheels for x86-64 only.
        cpu = {
            "linux-x86_64": {"tensorflow-cpu"},
            "linux-aarch64": {"tensorflow"},
            "macos-arm64": {"tensorflow"},
        }
        # Every combination of extras, the base (no extra) included.
        combinations = [
            set(extras)
            for size in range(len(self.extras) + 1)
            for extras in itertools.combinations(self.extras, size)
        ]
        self.assertEqual(len(combinations), 2 ** len(self.extras))
        for name, environment in ENVIRONMENTS.items():
            for extras in combinations:
                found = tensorflow_distributions(
                    self.requirements, extras, environment
                )
                msg = f"{name} {sorted(extras)}: {sorted(found)}"
                if "cpu" in extras and "gpu" in extras:
                    # Alternatives: both together give two distributions
                    # on x86-64 (README says to install one of them).
                    expected = cpu[name] | {"tensorflow"}
                elif "cpu" in extras:
                    expected = cpu[name]
                elif "gpu" in extras:
                    expected = {"tensorflow"}
                else:  # The base and every other extra: no TensorFlow.
                    expected = set()
                self.assertEqual(found, expected, msg=msg)
                if len(found) > 1:
                    self.assertLessEqual({"cpu", "gpu"}, extras, msg=msg)
        # cpu + gpu is the one combination with two distributions.
        both = tensorflow_distributions(
            self.requirements, ("cpu", "gpu"), ENVIRONMENTS["linux-x86_64"]
        )
        self.assertEqual(both, {"tensorflow", "tensorflow-cpu"})
        # The gpu extra adds CUDA to `tensorflow` (one requirement).
        (gpu,) = [
            r
            for r in self.requirements
            if r.marker is not None and r.marker.evaluate({"extra": "gpu"})
        ]
        self.assertEqual((gpu.name, gpu.extras), ("tensorflow", {"and-cuda"}))
        # The cpu extra asks for one distribution on every platform.
        for name, environment in ENVIRONMENTS.items():
            names = {
                canonicalize_name(r.name)
                for r in self.requirements
                if r.marker is not None
                and r.marker.evaluate({**environment, "extra": "cpu"})
            }
            self.assertEqual(names, cpu[name], msg=name)

    def test_the_old_dependencies_would_fail(self):
        # The check catches the bug it is for: tensorflow-cpu on x86-64 in
        # the base and tensorflow[and-cuda] in the gpu extra.
        old = [
            Requirement('tensorflow>=2.16; platform_machine != "x86_64"'),
            Requirement('tensorflow-cpu>=2.16; platform_machine == "x86_64"'),
            Requirement('tensorflow[and-cuda]>=2.16; extra == "gpu"'),
        ]
        x86, arm = ENVIRONMENTS["linux-x86_64"], ENVIRONMENTS["linux-aarch64"]
        self.assertEqual(
            tensorflow_distributions(old, ("gpu",), x86),
            {"tensorflow", "tensorflow-cpu"},
        )
        self.assertEqual(
            tensorflow_distributions(old, ("gpu",), arm), {"tensorflow"}
        )

    def test_ci_runs_the_quickstart_test_command(self):
        example, tests = quickstart_commands()
        self.assertStartsWith(
            example, 'python3 -m pip install -e ".[cpu,examples]" && '
        )
        self.assertEqual(
            tests,
            'python3 -m pip install -e ".[cpu,test]" && '
            "python3 -m pytest -q -n 2",
        )
        commands = [
            line
            for line in (ROOT / ".ci" / "run").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        self.assertEqual(
            commands[-3:], [tests, "ruff check .", "ruff format --check ."]
        )
        self.assertFalse((ROOT / ".ci" / "requirements.py").exists())

    def test_extras_match_the_code(self):
        base = {
            canonicalize_name(r.name)
            for r in self.requirements
            if r.marker is None
        }
        provided = base.union(*(self.extra_names(e) for e in self.extras))
        imports = set()
        for path in (ROOT / "keras_featreg").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imports |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imports.add(node.module.split(".")[0])
        third_party = (
            imports
            - set(sys.stdlib_module_names)
            - {
                "keras_featreg",
                "absl",  # a TensorFlow dependency
            }
        )
        for module in sorted(third_party):
            distributions = {
                name
                for name in provided
                if IMPORT_NAMES.get(name, name.replace("-", "_")) == module
            }
            self.assertTrue(distributions, msg=f"`import {module}`: no extra")
        # No extra installs what the code it names does not import:
        # keras_featreg.evaluation is NumPy code (faiss is optional).
        self.assertNotIn("eval", self.extras)
        self.assertNotIn("dev", self.extras)
        self.assertEqual(self.extra_names("faiss"), {"faiss-cpu"})
        # README promises TensorBoard for CollapseMonitor.
        self.assertEqual(self.extra_names("tensorboard"), {"tensorboard"})
        self.assertIn("tensorboard", self.extra_names("test"))

    def test_ruff_is_pinned_to_the_version_in_use(self):
        (ruff,) = [
            r
            for r in self.requirements
            if r.name == "ruff" and r.marker.evaluate({"extra": "test"})
        ]
        (specifier,) = ruff.specifier
        self.assertEqual(specifier.operator, "==")
        try:
            installed = importlib.metadata.version("ruff")
        except importlib.metadata.PackageNotFoundError:
            self.skipTest("ruff is not installed")
        self.assertEqual(specifier.version, installed)

    def test_release_files(self):
        license_text = (ROOT / "LICENSE").read_text()
        self.assertIn("Apache License\n", license_text)
        self.assertIn("Version 2.0, January 2004", license_text)
        self.assertIn("END OF TERMS AND CONDITIONS", license_text)
        for section in range(1, 10):
            self.assertIn(f"\n   {section}. ", license_text)
        self.assertEqual(self.metadata["license"], "Apache-2.0")
        version = keras_featreg.__version__
        self.assertEqual(self.metadata["version"], version)
        self.assertIn(f"## [{version}]", (ROOT / "CHANGELOG.md").read_text())
        self.assertTrue((ROOT / "keras_featreg" / "py.typed").is_file())

    def test_citation(self):
        yaml = pytest.importorskip("yaml")
        with open(ROOT / "CITATION.cff") as f:
            citation = yaml.safe_load(f)
        self.assertEqual(citation["cff-version"], "1.2.0")
        self.assertEqual(citation["type"], "software")
        self.assertEqual(str(citation["version"]), keras_featreg.__version__)
        self.assertEqual(citation["license"], "Apache-2.0")
        self.assertTrue(citation["authors"])
        papers = {
            reference["identifiers"][0]["value"]: reference
            for reference in citation["references"]
        }
        self.assertEqual(
            sorted(papers), ["arXiv:2103.02770", "arXiv:2105.04906"]
        )
        svmax, vicreg = papers["arXiv:2103.02770"], papers["arXiv:2105.04906"]
        self.assertStartsWith(svmax["title"], "SVMax")
        self.assertEqual(svmax["year"], 2021)
        self.assertIn("WACV", svmax["collection-title"])
        self.assertEqual(svmax["authors"][0]["family-names"], "Taha")
        self.assertStartsWith(vicreg["title"], "VICReg")
        self.assertEqual(vicreg["year"], 2022)
        self.assertIn("ICLR", vicreg["collection-title"])
        self.assertEqual(
            [a["family-names"] for a in vicreg["authors"]],
            ["Bardes", "Ponce", "LeCun"],
        )


@pytest.mark.slow
class DistributionContentsTest(testing.TestCase):
    def test_sdist_and_wheel(self):
        if importlib.util.find_spec("setuptools") is None:
            self.skipTest("the build backend, setuptools, is absent")
        directory = pathlib.Path(self.get_temp_dir())
        project = directory / "project"
        shutil.copytree(ROOT, project, ignore=IGNORED)
        out = directory / "dist"
        out.mkdir()
        code = (
            "import sys\n"
            "from setuptools import build_meta\n"
            "build_meta.build_sdist(sys.argv[1])\n"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(out)],
            cwd=project,
            check=True,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(
            [
                sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                "--no-index", "--no-build-isolation", "--wheel-dir",
                str(out), str(project),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )  # fmt: skip
        (sdist,) = out.glob("*.tar.gz")
        (wheel,) = out.glob("*.whl")
        with tarfile.open(sdist) as archive:
            names = {
                name.split("/", 1)[1]
                for name in archive.getnames()
                if "/" in name
            }
        for name in (
            "LICENSE",
            "CHANGELOG.md",
            "CITATION.cff",
            "README.md",
            "MANIFEST.in",
            ".ci/run",
            "keras_featreg/py.typed",
            "keras_featreg/ops/__init__.py",
            "tests/test_packaging.py",
            "tests/examples/common.py",
            "examples/metric_learning.py",
            "docs/distributed.md",
            "benchmarks/bench_ops.py",
        ):
            self.assertIn(name, names)
        self.assertFalse([n for n in names if "__pycache__" in n])
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
        self.assertIn("keras_featreg/py.typed", names)
        self.assertTrue(
            [n for n in names if re.search(r"dist-info/.*LICENSE$", n)]
        )
        self.assertFalse(
            [n for n in names if not n.startswith("keras_featreg")]
        )
