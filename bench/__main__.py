"""`python -m bench [name ...]`: run benchmarks, write bench/results/latest.json and latest.md."""

from __future__ import annotations

import asyncio
import importlib
import json
import platform
import sys
import time
from pathlib import Path

from bench.harness import markdown_table

def discover() -> list[str]:
    """Every bench module (each has `async def run() -> list[Comparison]`), in name order: no registration."""
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if p.stem not in {"__init__", "__main__", "harness"}
                  and not p.stem.startswith("_"))


BENCHMARKS = discover()


async def main(selected: list[str]) -> int:
    rows = []
    for name in selected or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(f"running {name} ...", flush=True)
        rows.extend(await module.run())
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.platform(),
              "python": platform.python_version(), "results": [row.as_dict() for row in rows]}
    (out / "latest.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(rows)
    (out / "latest.md").write_text(f"# Benchmarks ({report['when']})\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
