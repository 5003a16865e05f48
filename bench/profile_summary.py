"""Summarize a py-spy ``--format raw`` profile (what ``bench/load.py --profile DIR`` writes).

    python -m bench.profile_summary DIR/listen-300.txt [--top 30]

Prints, per function, the share of samples in which it is on the stack (inclusive) and at the top
(self), over all threads; the event-loop thread and the helper threads are split out first.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def load(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append(([f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                         for f in stack.split(";")], int(count)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    samples = load(args.profile)
    total = sum(n for _, n in samples) or 1
    threads = collections.Counter("event loop" if any(f.startswith("run (runners.py") or "asyncio_run" in f
                                                      for f in st) else "other threads" for st, n in samples
                                  for _ in range(n))
    print(f"{total} samples: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in threads.most_common()))
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for stack, n in samples:
        for name in set(stack):
            inclusive[name] += n
        own[stack[-1]] += n
    print(f"{'incl':>6} {'self':>6}  function (file)")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}% {100 * own[name] / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
