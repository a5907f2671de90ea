"""``python -m benchmarks.gateway.profile``: py-spy on ``lingyun serve`` under load.

Starts a simulator replica and Lingyun as the benchmark does, drives them with the load
generator, records the serve process with ``py-spy record --format raw`` (collapsed stacks),
and prints the functions with the most samples: self time and inclusive time.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.gateway.__main__ import layout
from benchmarks.gateway.procs import pinned, stop_on_sigterm
from benchmarks.gateway.targets import PACES, start_lingyun, start_replica


def summarize(raw: Path, top: int) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    out = [f"{total} samples", "", "self:"]
    out += [f"{c / total:6.1%}  {f}" for f, c in self_t.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"{c / total:6.1%}  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    stop_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--count", type=int, default=6000)
    p.add_argument("--duration", type=int, default=8, help="seconds py-spy records")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--out", type=Path, default=None, help="keep the raw stacks here")
    p.add_argument(
        "--target",
        default="lingyun",
        choices=("lingyun", "lingyun-noobs", "lingyun-nometer"),
        help="which configuration of Lingyun to record (see targets.py)",
    )
    args = p.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cpus = layout(True)
    pace = PACES[0]
    with tempfile.TemporaryDirectory(prefix="lingyun-prof-") as tmp:
        work = Path(tmp)
        replica, url = start_replica(pace, work, cpus["replica"])
        gw = None
        try:
            gw = start_lingyun({pace.name: url}, work, cpus["gateway"], args.target)
            assert gw.proc is not None
            cmd = [
                sys.executable, "-m", "benchmarks.gateway.loadgen", "--url", gw.base_url,
                "--key", gw.key, "--model", pace.name, "--concurrency", str(args.concurrency),
                "--count", str(args.count),
            ]  # fmt: skip
            if args.stream:
                cmd.append("--stream")
            gen = subprocess.Popen(pinned(cmd, cpus["loadgen"]), stdout=subprocess.PIPE)
            assert gen.stdout is not None
            gen.stdout.readline()  # warm
            raw = args.out or work / "profile.txt"
            record = [pyspy, "record", "-p", str(gw.proc.pid), "-d", str(args.duration),
                      "-r", "200", "-f", "raw", "-o", str(raw), "--gil"]  # fmt: skip
            subprocess.run(record, check=True, capture_output=True)
            gen.communicate()  # drain its output: a full pipe would block it forever
            print(summarize(raw, args.top))
        finally:
            if gw is not None and gw.proc is not None:
                gw.proc.stop()
            replica.stop()


if __name__ == "__main__":
    main()
