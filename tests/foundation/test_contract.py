"""The contract: generated stubs are current, and buf lint is clean."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys

import pytest

from tests.mesh import REPO


def test_generated_stubs_are_not_stale(tmp_path):
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"), str(out)], check=True, cwd=REPO)
    committed = REPO / "shared" / "gen"
    fresh = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    current = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert fresh == current, "generated file set differs: run `make proto`"
    stale = [str(p) for p in fresh if not filecmp.cmp(out / p, committed / p, shallow=False)]
    assert not stale, f"stale generated code, run `make proto`: {stale}"


def test_buf_lint_is_clean():
    buf = REPO / ".tools" / "node" / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        buf = shutil.which("buf")
        if buf is None:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail("CI=true and buf is not installed (make tools installs it from npm)", pytrace=False)
            pytest.skip("buf is not installed (make tools installs it from npm)")
    result = subprocess.run([str(buf), "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
