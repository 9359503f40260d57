"""The launcher: TF_CONFIG per worker, failures, restarts, the CLI.

The workers here are plain Python scripts (no TensorFlow), so each start
takes milliseconds; test_multiworker.py launches real training workers.
"""

import json
import os
import sys
import textwrap
import time

from keras_featreg.distribute import launch
from tests import helpers as testing

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    config = json.loads(os.environ["TF_CONFIG"])
    index = config["task"]["index"]
    restart = int(os.environ["KERAS_FEATREG_RESTART"])
    out, mode = sys.argv[1], sys.argv[2]
    with open(os.path.join(out, f"{restart}_{index}.json"), "w") as f:
        json.dump(config, f)
    if mode == "fail_once" and restart == 0:
        if index == 1:  # fail once worker 0 is surely running
            while not os.path.exists(os.path.join(out, "0_0.json")):
                time.sleep(0.01)
            sys.exit(3)
        time.sleep(60)  # the launcher must stop this worker
    if mode == "sleep":
        time.sleep(60)
    """
)


class LaunchTest(testing.TestCase):
    def setUp(self):
        super().setUp()
        self.out = self.get_temp_dir()
        self.script = os.path.join(self.out, "worker.py")
        with open(self.script, "w") as file:
            file.write(WORKER)

    def configs(self):
        names = sorted(n for n in os.listdir(self.out) if n.endswith(".json"))
        configs = {}
        for name in names:
            with open(os.path.join(self.out, name)) as file:
                configs[name[: -len(".json")]] = json.load(file)
        return configs

    def test_tf_config(self):
        config = json.loads(launch.tf_config(["a:1", "b:2"], 1))
        self.assertEqual(
            config,
            {
                "cluster": {"worker": ["a:1", "b:2"]},
                "task": {"type": "worker", "index": 1},
            },
        )
        with self.assertRaisesRegex(ValueError, "Received: task_index=2"):
            launch.tf_config(["a:1", "b:2"], 2)
        ports = launch.free_ports(3)
        self.assertLen(set(ports), 3)

    def test_local_workers_get_their_tf_config(self):
        code = launch.launch_local([self.script, self.out, "ok"], 3)
        self.assertEqual(code, 0)
        configs = self.configs()
        self.assertEqual(sorted(configs), ["0_0", "0_1", "0_2"])
        workers = configs["0_0"]["cluster"]["worker"]
        self.assertLen(set(workers), 3)
        for index in range(3):
            config = configs[f"0_{index}"]
            self.assertEqual(config["task"], {"type": "worker", "index": index})
            self.assertEqual(config["cluster"]["worker"], workers)
            self.assertTrue(workers[index].startswith("127.0.0.1:"))

    def test_failure_stops_the_job_and_restarts_it(self):
        began = time.monotonic()
        code = launch.launch_local(
            [self.script, self.out, "fail_once"], 2, max_restarts=1
        )
        self.assertEqual(code, 0)
        self.assertLess(time.monotonic() - began, 30)  # no 60 s sleep
        self.assertEqual(sorted(self.configs()), ["0_0", "0_1", "1_0", "1_1"])

    def test_failure_without_restarts_returns_its_code(self):
        code = launch.launch_local([self.script, self.out, "fail_once"], 2)
        self.assertEqual(code, 3)

    def test_timeout(self):
        code = launch.launch_local(
            [self.script, self.out, "sleep"], 1, timeout=1
        )
        self.assertEqual(code, 124)

    def test_command_line(self):
        code = launch.main(
            ["--num-workers", "2", "--", self.script, self.out, "ok"]
        )
        self.assertEqual(code, 0)
        self.assertEqual(sorted(self.configs()), ["0_0", "0_1"])
        # A cluster host runs only its own worker.
        hostfile = os.path.join(self.out, "hosts.txt")
        with open(hostfile, "w") as file:
            file.write("# cluster\nnode1:2222\nnode2:2222  # second\n")
        for flags, folder in (
            (["--hostfile", hostfile], "from_file"),
            (["--workers", "node1:2222,node2:2222"], "from_list"),
        ):
            out = os.path.join(self.out, folder)
            os.makedirs(out)
            code = launch.main(
                [*flags, "--task-index", "1", "--"]
                + [sys.executable, self.script, out, "ok"]
            )
            self.assertEqual(code, 0)
            self.assertEqual(os.listdir(out), ["0_1.json"])
            with open(os.path.join(out, "0_1.json")) as file:
                config = json.load(file)
            self.assertEqual(
                config["cluster"]["worker"], ["node1:2222", "node2:2222"]
            )
            self.assertEqual(config["task"]["index"], 1)

    def test_invalid_arguments(self):
        with self.assertRaises(SystemExit):
            launch.main(["--num-workers", "2"])  # no command
        with self.assertRaises(SystemExit):
            launch.main(["--workers", "a:1", "--", self.script])  # no index
        with self.assertRaisesRegex(ValueError, "Received: num_workers=0"):
            launch.launch_local([self.script], 0)
        with self.assertRaisesRegex(ValueError, "Received: worker='node1'"):
            launch.main(["--workers", "node1", "--task-index", "0", "--", "x"])
        with self.assertRaisesRegex(ValueError, "Received: command=\\[\\]"):
            launch.launch_local([], 1)
