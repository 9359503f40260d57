"""Examples write under runs/; the committed saved_models/ change only on
request (`--update-saved-models`)."""

import os
import pathlib
import shutil
import subprocess

import pytest

from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import load_example

ROOT = EXAMPLES.parent
metric_learning = load_example("metric_learning")
ssl = load_example("ssl_vicreg")


def git(*args, cwd):
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
        + list(args),
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


class ExampleOutputPathsTest(testing.TestCase):
    def test_defaults_stay_under_the_output_dir(self):
        for module, name in (
            (metric_learning, "metric_learning"),
            (ssl, "ssl"),
        ):
            args = module.parse_args([])
            self.assertEqual(args.output_dir, os.path.join("runs", name))
            self.assertEqual(
                args.export_dir, os.path.join("runs", name, "export")
            )
            args = module.parse_args(["--output-dir", "elsewhere"])
            self.assertEqual(
                args.export_dir, os.path.join("elsewhere", "export")
            )
            self.assertEqual(
                module.parse_args(["--export-dir", ""]).export_dir, ""
            )

    def test_saved_models_only_on_request(self):
        for module, name in (
            (metric_learning, "metric_learning"),
            (ssl, "ssl_vicreg"),
        ):
            args = module.parse_args(["--update-saved-models"])
            self.assertEqual(args.export_dir, str(ROOT / "saved_models" / name))
            with self.assertRaises(SystemExit):
                module.parse_args(
                    ["--update-saved-models", "--export-dir", "somewhere"]
                )

    def test_gitignore_covers_runs(self):
        with open(ROOT / ".gitignore") as f:
            self.assertIn("runs/", f.read().split())


@pytest.mark.slow
class ExampleRunLeavesCheckoutCleanTest(testing.TestCase):
    def test_tiny_metric_learning_run_leaves_git_status_clean(self):
        # A throwaway repository with the examples, the committed models
        # and .gitignore, so that the run writes nothing into this
        # checkout's runs/; the script runs from its root, as README says.
        if shutil.which("git") is None:
            self.skipTest("git is not installed")
        repo = pathlib.Path(self.get_temp_dir())
        shutil.copytree(EXAMPLES, repo / "examples")
        shutil.copy(ROOT / ".gitignore", repo)
        (repo / "saved_models" / "metric_learning").mkdir(parents=True)
        committed = repo / "saved_models" / "metric_learning" / "x.json"
        committed.write_text("{}\n")
        git("init", "--quiet", cwd=repo)
        git("add", "-A", cwd=repo)
        git("commit", "--quiet", "-m", "snapshot", cwd=repo)
        result = testing.run_python(
            [
                "examples/metric_learning.py",
                "--iterations",
                "4",
                "--epochs",
                "2",
                "--lrs",
                "0.01",
                "--losses",
                "contrastive",
                "--methods",
                "vanilla",
                "--verbose",
                "0",
            ],  # fmt: skip
            cwd=repo,
            env={
                "PYTHONPATH": os.pathsep.join(
                    [str(ROOT), os.environ.get("PYTHONPATH", "")]
                ),
                "MPLBACKEND": "Agg",
            },
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        self.assertEqual(git("status", "--porcelain", cwd=repo), "")
        export = repo / "runs" / "metric_learning" / "export"
        self.assertTrue((export / "embedding_model.keras").is_file())
        self.assertTrue((export / "serving" / "saved_model.pb").is_file())
        self.assertEqual(
            os.listdir(repo / "saved_models" / "metric_learning"), ["x.json"]
        )
