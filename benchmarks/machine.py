"""The machine a benchmark ran on, for the tables' captions."""

import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or `platform.processor()`)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
