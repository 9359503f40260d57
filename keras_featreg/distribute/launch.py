"""Starts multi-worker training: N local workers, or this host's worker.

```bash
# N workers on this machine, over 127.0.0.1 (trying it, tests, benchmarks):
python -m keras_featreg.distribute.launch --num-workers 2 -- \\
    examples/vicreg.py --strategy multiworker
# A cluster: the same command on every host, with that host's index:
python -m keras_featreg.distribute.launch \\
    --workers host1:12345,host2:12345 --task-index 0 -- \\
    examples/vicreg.py --strategy multiworker
```

Each worker gets `TF_CONFIG` (the cluster and its own index), which
`keras_featreg.distribute.get_strategy("multiworker")` reads. The command
after `--` is run as is, except that a first word ending in `.py` is run
with this Python (`-m module` too).

Failures. When a worker exits with an error (or is killed), the launcher
stops the others (a collective would wait for the dead peer forever), and
with `--max-restarts K` starts the whole job again, up to K times; a
`DistributedTrainer` with a `checkpoint_dir` then resumes from the last
checkpoint. Each start sets `KERAS_FEATREG_RESTART` (0 for the first) in
the workers' environment. On a cluster, run the launcher with
`--max-restarts` on every host: a failed worker restarts on its host, and
the others, whose collectives then fail, restart on theirs.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

RESTART_VARIABLE = "KERAS_FEATREG_RESTART"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports free on `host` right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(workers: list[str], task_index: int) -> str:
    """The `TF_CONFIG` JSON of worker `task_index` of the `workers` list.

    Args:
        workers: List of `"host:port"` strings, one per worker; worker 0 is
            the chief.
        task_index: Int, this worker's index in `workers`.

    Returns:
        String, e.g. `{"cluster": {"worker": [...]}, "task": {"type":
        "worker", "index": 0}}`.
    """
    if not 0 <= task_index < len(workers):
        raise ValueError(
            f"`task_index` must be in [0, {len(workers)}). "
            f"Received: task_index={task_index}"
        )
    return json.dumps(
        {
            "cluster": {"worker": list(workers)},
            "task": {"type": "worker", "index": task_index},
        }
    )


def _command(args: list[str]) -> list[str]:
    if not args:
        raise ValueError(
            "Give the worker command after `--`. Received: command=[]"
        )
    if args[0].endswith(".py") or args[0] == "-m":
        return [sys.executable, *args]
    return list(args)


def _forward(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, b""):
        out.write(prefix + line.decode(errors="replace"))
        out.flush()
    stream.close()


def _start(command, workers, index, restart, env, prefix_output):
    environment = dict(os.environ if env is None else env)
    environment["TF_CONFIG"] = tf_config(workers, index)
    environment[RESTART_VARIABLE] = str(restart)
    pipe = subprocess.PIPE if prefix_output else None
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=pipe,
        stderr=subprocess.STDOUT if prefix_output else None,
        start_new_session=True,  # its own process group, stopped as one
    )
    if prefix_output:
        thread = threading.Thread(
            target=_forward,
            args=(process.stdout, f"[worker {index}] ", sys.stdout),
            daemon=True,
        )
        thread.start()
        process.forward_thread = thread
    return process


def _stop(processes, grace: float = 5.0) -> None:
    """SIGTERM each worker's process group, then SIGKILL what remains."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def _run_attempt(start_all, timeout, deadline_message) -> int:
    """Starts the workers; returns 0, the first failure's code, or 124."""
    processes = start_all()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                _stop(processes)
                return failed[0]
            if all(code == 0 for code in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                print(deadline_message, file=sys.stderr, flush=True)
                _stop(processes)
                return 124
            time.sleep(0.05)
    except BaseException:
        _stop(processes)
        raise
    finally:
        for process in processes:
            thread = getattr(process, "forward_thread", None)
            if thread is not None:
                thread.join(timeout=5)


def _with_restarts(run_once, max_restarts: int, label: str) -> int:
    code = 1
    for restart in range(max_restarts + 1):
        code = run_once(restart)
        if code in (0, 124):
            return code
        if restart < max_restarts:
            print(
                f"[launch] {label} failed (exit code {code}); restarting "
                f"({restart + 1}/{max_restarts})",
                file=sys.stderr,
                flush=True,
            )
    return code


def launch_local(
    command: list[str],
    num_workers: int,
    max_restarts: int = 0,
    timeout: float | None = None,
    env: dict | None = None,
    prefix_output: bool = True,
) -> int:
    """Runs `command` as `num_workers` workers on 127.0.0.1; waits for them.

    Each start picks free ports. See the module docstring for restarts.

    Args:
        command: List of strings, the worker command (`script.py args...`
            runs with this Python).
        num_workers: Int >= 1.
        max_restarts: Int >= 0, whole-job restarts after a failure.
            Defaults to `0`.
        timeout: Optional float, seconds per start before the workers are
            stopped (exit code 124). Defaults to `None`.
        env: Optional environment for the workers. Defaults to `None`
            (this process's).
        prefix_output: Bool, prefix each output line with `[worker i]`.
            Defaults to `True`.

    Returns:
        Int exit code: 0 when every worker succeeded.
    """
    if num_workers < 1:
        raise ValueError(
            f"`num_workers` must be >= 1. Received: num_workers={num_workers}"
        )
    command = _command(command)

    def run_once(restart):
        def start_all():
            ports = free_ports(num_workers)
            workers = [f"127.0.0.1:{port}" for port in ports]
            return [
                _start(command, workers, i, restart, env, prefix_output)
                for i in range(num_workers)
            ]

        return _run_attempt(
            start_all, timeout, f"[launch] timed out after {timeout} s"
        )

    return _with_restarts(run_once, max_restarts, "a worker")


def launch_worker(
    command: list[str],
    workers: list[str],
    task_index: int,
    max_restarts: int = 0,
    timeout: float | None = None,
    env: dict | None = None,
) -> int:
    """Runs this host's worker `task_index` of a cluster; waits for it.

    Args:
        command: List of strings, the worker command.
        workers: List of `"host:port"`, every worker of the cluster, the
            same list on every host.
        task_index: Int, this host's index in `workers`.
        max_restarts: Int >= 0. Defaults to `0`.
        timeout: Optional float, seconds per start. Defaults to `None`.
        env: Optional environment. Defaults to `None`.

    Returns:
        Int exit code.
    """
    tf_config(workers, task_index)  # validates the index
    command = _command(command)

    def run_once(restart):
        return _run_attempt(
            lambda: [_start(command, workers, task_index, restart, env, False)],
            timeout,
            f"[launch] timed out after {timeout} s",
        )

    return _with_restarts(run_once, max_restarts, f"worker {task_index}")


def _read_hosts(args) -> list[str]:
    if args.hostfile:
        with open(args.hostfile) as file:
            hosts = [
                line.split("#")[0].strip()
                for line in file
                if line.split("#")[0].strip()
            ]
    else:
        hosts = [host.strip() for host in args.workers.split(",") if host]
    for host in hosts:
        if ":" not in host:
            raise ValueError(
                f"Each worker must be host:port. Received: worker={host!r}"
            )
    return hosts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    else:
        command = []
    parser = argparse.ArgumentParser(
        prog="python -m keras_featreg.distribute.launch",
        description="Start multi-worker training with TF_CONFIG. The worker "
        "command follows `--`.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--num-workers", type=int, help="start N workers on 127.0.0.1"
    )
    where.add_argument(
        "--workers", help="cluster: comma-separated host:port list"
    )
    where.add_argument("--hostfile", help="cluster: one host:port per line")
    parser.add_argument(
        "--task-index",
        type=int,
        help="cluster: this host's index in the worker list",
    )
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per start"
    )
    args = parser.parse_args(argv)
    if not command:
        parser.error("give the worker command after `--`")
    if args.max_restarts < 0:
        parser.error("--max-restarts must be >= 0")
    if args.num_workers is not None:
        return launch_local(
            command, args.num_workers, args.max_restarts, args.timeout
        )
    if args.task_index is None:
        parser.error("--task-index is required with --workers/--hostfile")
    return launch_worker(
        command,
        _read_hosts(args),
        args.task_index,
        args.max_restarts,
        args.timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
