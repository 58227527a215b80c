"""`make bench`: run every benchmark in turn; each prints its ratios against a baseline
measured in the same run (bench/RESULTS.md records the figures and the commands)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# scripts that run again with these arguments, after their default run
ALSO = {"bench_runner.py": [["--contracts", "1,5,20,50", "--runner-groups", "2"]]}


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        for args in [[], *ALSO.get(script.name, [])]:
            name = " ".join([script.name, *args])
            print(f"\n=== {name} " + "=" * max(0, 60 - len(name)), flush=True)
            if subprocess.run([sys.executable, str(script), *args], cwd=HERE.parent).returncode != 0:
                failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
