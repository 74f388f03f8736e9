"""The gateway's shape, checked from its source: it renders over the mesh client and holds no rule of its own.

- It reaches the mesh through the orchestrator only: no backend stub (`*_pb2_grpc` of Generate, Upscale or
  BackgroundRemoval) and no service package is imported by any gateway module.
- A dialect never imports another dialect (shared mapping lives in gateway/translate.py and shared/).
- No sizing, step or pricing rule is written in the gateway: those belong to Generate and the orchestrator, which
  take them as request fields (templates, aspect ratio, quality) and answer with the figures.
- No pixels are touched in the gateway (no PIL, NumPy or OpenCV): image work belongs to the services, off the
  event loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
MODULES = sorted(p for p in GATEWAY.rglob("*.py") if "__pycache__" not in p.parts)
DIALECTS = {p.stem for p in (GATEWAY / "dialects").glob("*.py") if p.stem != "__init__"}

ALLOWED_STUBS = {"orchestrator_service_pb2_grpc"}
IMAGE_LIBRARIES = {"PIL", "numpy", "cv2", "skimage"}
# Names that carry a size, a step count or a price. Arithmetic on them, or a function named for computing them,
# is a rule; reading and rendering them is not.
RULE_NAMES = re.compile(r"(width|height|steps|cost|usd|price|pricing|credit|cents)", re.IGNORECASE)
RULE_FUNCTIONS = re.compile(r"^_?(fit|.*_fit|.*steps_for|quality_steps|.*price.*|.*pricing.*|.*credits?_for.*|"
                            r"estimate_credits|.*cost_of.*)$")
# Names that carry a count a service bounds (images per request, batches): a min/max of one against a literal is a
# hard-coded limit.
LIMIT_NAMES = re.compile(r"(images|remaining|batch|width|height|steps)", re.IGNORECASE)
ARITHMETIC = (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Add, ast.Sub, ast.Pow)


def _name(module: Path) -> str:
    return ".".join(module.relative_to(GATEWAY.parent).with_suffix("").parts)


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _parse(module: Path) -> ast.AST:
    return ast.parse(module.read_text(), filename=str(module))


def _mentions_rule_name(node: ast.AST, names: re.Pattern = RULE_NAMES) -> bool:
    for part in ast.walk(node):
        text = part.id if isinstance(part, ast.Name) else part.attr if isinstance(part, ast.Attribute) else None
        if text and names.search(text):
            return True
    return False


@pytest.mark.parametrize("module", MODULES, ids=_name)
def test_the_gateway_reaches_the_mesh_through_the_orchestrator_only(module):
    bad = [name for name in _imports(_parse(module))
           if (name.endswith("_pb2_grpc") and name.rsplit(".", 1)[-1] not in ALLOWED_STUBS)
           or name == "services" or name.startswith("services.")]
    assert not bad, f"{_name(module)} imports {bad}: the gateway talks to the orchestrator through shared/mesh_client"


@pytest.mark.parametrize("module", [p for p in MODULES if p.parent.name == "dialects"], ids=_name)
def test_no_dialect_imports_another(module):
    own = module.stem
    others = {d for d in DIALECTS if d != own}
    bad = [name for name in _imports(_parse(module))
           if any(name == f"gateway.dialects.{d}" or name.startswith(f"gateway.dialects.{d}.") for d in others)]
    assert not bad, f"{_name(module)} imports another dialect: {bad}"


@pytest.mark.parametrize("module", MODULES, ids=_name)
def test_the_gateway_touches_no_pixels(module):
    bad = [name for name in _imports(_parse(module)) if name.split(".")[0] in IMAGE_LIBRARIES]
    assert not bad, f"{_name(module)} imports {bad}: image work belongs to the services"


@pytest.mark.parametrize("module", MODULES, ids=_name)
def test_the_gateway_defines_no_sizing_step_or_pricing_rule(module):
    tree = _parse(module)
    rules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and RULE_FUNCTIONS.match(node.name):
            rules.append(f"line {node.lineno}: def {node.name}")
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ARITHMETIC)
              and (_mentions_rule_name(node.left) or _mentions_rule_name(node.right))):
            rules.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max")
              and any(isinstance(arg, ast.Constant) and isinstance(arg.value, (int, float)) for arg in node.args)
              and any(_mentions_rule_name(arg, LIMIT_NAMES) for arg in node.args)):
            # A hard-coded bound (the old min(8, ...) image limit): limits belong to the service that owns them.
            rules.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not rules, f"{_name(module)} computes sizes, steps or prices: " + "; ".join(rules)


def test_the_rule_detector_sees_a_rule():
    """The checks above must be able to fail: a sizing helper in gateway style is caught."""
    tree = ast.parse("def _fit(w, h):\n    return w // 8 * 8, min(8, h)\n")
    functions = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and RULE_FUNCTIONS.match(n.name)]
    arithmetic = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and _mentions_rule_name(n)]
    assert functions == ["_fit"]
    limits = [n for n in ast.walk(ast.parse("batch = min(8, remaining)")) if isinstance(n, ast.Call)
              and any(_mentions_rule_name(a, LIMIT_NAMES) for a in n.args)]
    assert len(limits) == 1
    assert arithmetic == []  # w and h are not rule names: the name list is what makes the arithmetic check bite
    width_tree = ast.parse("def f(width):\n    return width // 8 * 8\n")
    assert [n for n in ast.walk(width_tree) if isinstance(n, ast.BinOp) and _mentions_rule_name(n)]
