"""Dependencies run one way (issue 16, DESIGN §2): data → models → losses → strategies → engine → run → experiments
→ commands. Every import in the package, module-level or inside a function, is read from the source (AST) and
checked against the layer of the importing module: a module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "breastssl"

# the first matching prefix wins; a module's layer is its rank
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "config", "fsutil", "parallel", "console", "__init__", "_version")),
    ("data", ("data", "metrics", "nlp", "postprocess")),
    ("models", ("models",)),
    ("losses", ("losses",)),
    ("strategies", ("strategies",)),
    ("engine", ("engine",)),
    ("run", ("run", "inference", "export", "reports", "api")),
    ("experiments", ("experiments",)),
    ("commands", ("commands", "cli", "__main__")),
]


def layer_of(module: str) -> int:
    """Rank of a dotted module path relative to the package (e.g. "data.dbt_slices")."""
    head = module.split(".")[0]
    for rank, (_, prefixes) in enumerate(LAYERS):
        if head in prefixes:
            return rank
    raise AssertionError(f"module breastssl.{module} is in no layer: add its top-level name to LAYERS")


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        out.append((".".join(parts), path))
    return out


def resolve(target: str) -> str:
    """The module a dotted name refers to: names imported from a module (attributes) are dropped."""
    parts = target.split(".")
    while parts and not ((PACKAGE.joinpath(*parts).with_suffix(".py")).is_file() or PACKAGE.joinpath(*parts).is_dir()):
        parts.pop()
    return ".".join(parts) or "__init__"


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported module relative to the package, line) for every breastssl import in the file."""
    is_pkg = path.name == "__init__.py"
    package = module.split(".")[:-1] if not is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                names = [a.name for a in node.names]
                if not node.module:  # from . import x  →  the submodules x
                    found += [(f"{target}.{n}".strip("."), node.lineno) for n in names]
                    continue
                found.append((target, node.lineno))
            elif node.module and node.module.startswith("breastssl."):
                found.append((node.module.removeprefix("breastssl."), node.lineno))
        elif isinstance(node, ast.Import):
            found += [
                (a.name.removeprefix("breastssl."), node.lineno) for a in node.names if a.name.startswith("breastssl.")
            ]
    return [(resolve(t), line) for t, line in found if t]


def test_every_import_points_down_the_layers():
    bad = []
    for module, path in modules():
        own = layer_of(module)
        for target, line in imports_of(module, path):
            if layer_of(target) > own:
                bad.append(f"breastssl/{path.relative_to(PACKAGE)}:{line} ({LAYERS[own][0]}) imports "
                           f"breastssl.{target} ({LAYERS[layer_of(target)][0]})")  # fmt: skip
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize("low,high", [("experiments", "commands"), ("run", "experiments"), ("data", "engine")])
def test_named_directions(low, high):
    """The cycles issue 16 found: experiments ↔ commands, and data → engine."""
    for module, path in modules():
        if module.split(".")[0] == low:
            assert not [t for t, _ in imports_of(module, path) if t.split(".")[0] == high], f"{module} imports {high}"


def test_no_private_name_is_imported_across_packages():
    """DESIGN §2: a module may use another package's public names only (``_name`` stays inside its package)."""
    bad = []
    for module, path in modules():
        own = module.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith("breastssl")):
                continue
            target = imports_of_node(module, path, node)
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private and target.split(".")[0] != own:
                bad.append(f"breastssl/{path.relative_to(PACKAGE)}:{node.lineno} imports {private} from {target}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def imports_of_node(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` node names, relative to the package."""
    if not node.level:
        return resolve((node.module or "").removeprefix("breastssl."))
    package = module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return resolve(".".join([*base, *(node.module.split(".") if node.module else [])]))
