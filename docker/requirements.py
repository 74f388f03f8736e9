"""Print the requirement lines of imagemesh's base dependencies plus the given extras.

Used inside image builds (and by `make wheelhouse`) so that dependencies are installed from
pyproject.toml alone, before any source is copied: the dependency layer is rebuilt only when
pyproject.toml, constraints.txt or the wheelhouse change.

    python3 docker/requirements.py upscale            # base + [upscale]
    python3 docker/requirements.py --all              # base + every extra except dev/all
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str], everything: bool) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    if everything:
        extras = [name for name in optional if name not in {"dev", "all"}]
    lines = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; known: {', '.join(sorted(optional))}")
        for req in optional[extra]:
            # Self-references such as imagemesh[a,b] only exist in the aggregate extras.
            if re.match(r"^imagemesh\b", req):
                continue
            lines.append(req)
    seen: set[str] = set()
    return [line for line in lines if not (line in seen or seen.add(line))]


def main(argv: list[str]) -> int:
    everything = "--all" in argv
    extras = [arg for arg in argv if not arg.startswith("--")]
    here = Path(__file__).resolve().parent
    pyproject = here / "pyproject.toml"
    if not pyproject.exists():
        pyproject = here.parent / "pyproject.toml"
    print("\n".join(requirements(pyproject, extras, everything)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
