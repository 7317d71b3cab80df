"""Run a command and record its wall time and peak RSS, like ``/usr/bin/time -v``.

    python -m bench.timed RESULT.json CMD [ARGS...]

Why a launcher: Linux starts a child's peak-RSS count (``ru_maxrss``) from the memory of
the process that forked it, so a command started straight from a big benchmark process
would report at least that process's size. Started from this small process instead, it
reports its own peak (floored at this launcher's ~10 MB).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    result_path, cmd = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(result_path, "w") as fh:
        # Linux reports ru_maxrss in KiB.
        json.dump({"wall_s": wall, "max_rss_kb": usage.ru_maxrss, "status": status}, fh)
    sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    main()
