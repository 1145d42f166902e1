"""The import order runtime <- engines <- training <- export <- cli, read from every module's source.

Every ``import`` and ``from ... import`` (at module level or inside a function: a lazy import is
still a dependency) is resolved to the layer of the module it names; a layer may import only the
layers below it. A violation fails naming the file, the line and the import, so the fix starts at
the right place. ``edge_ls.profiles`` is runtime-level configuration (the runtime reads tier profiles
to pick backends), so it sits in the runtime layer. The runtime and engines never import torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layers bottom-up; each may import itself and every layer before it.
ORDER = ("runtime", "engines", "training", "export", "cli")
#: Source folders of the mapped packages (see [tool.setuptools.package-dir] in pyproject.toml).
FOLDERS = {
    "edge_ls": ROOT / "edge_ls",
    "edge_ls.engines": ROOT / "engines",
    "edge_ls.training": ROOT / "training",
    "edge_ls.export": ROOT / "export",
    "edge_ls.profiles": ROOT / "profiles",
}
#: Third-party packages a layer must not import (torch is the train/export extra).
FORBIDDEN_THIRD_PARTY = {"runtime": ("torch", "torchvision"), "engines": ("torch", "torchvision")}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name; None for modules outside edge-ls."""
    parts = module.split(".")
    if parts[0] != "edge_ls":
        return None
    sub = parts[1] if len(parts) > 1 else ""
    if sub in ("engines", "training", "export", "cli"):
        return sub
    if sub == "__main__":  # ``python -m edge_ls``: the CLI's entry point
        return "cli"
    return "runtime"  # edge_ls proper, edge_ls.io, backends, models, profiles


def modules() -> list[tuple[str, Path]]:
    """(dotted name, file) of every module of the package."""
    found = []
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "edge_ls" and parts and parts[0] in ("engines", "training", "export", "profiles"):
                continue  # not there; mapped folders are listed on their own
            found.append((".".join([package, *parts]), path))
    return found


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, str]]:
    """(line, resolved module, source text) of every import in ``tree``, lazy ones included.

    ``from edge_ls import training`` names the subpackage, so each imported name is also tried as a
    module under the ``from`` part.
    """
    out: list[tuple[int, str, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((node.lineno, alias.name, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = ", ".join(a.name for a in node.names)
            text = f"from {'.' * node.level}{node.module or ''} import {names}"
            out.append((node.lineno, source, text))
            for alias in node.names:
                out.append((node.lineno, f"{source}.{alias.name}", text))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            name = node.args[0].value
            out.append((node.lineno, name, f"import_module({name!r})"))
    return out


def violations() -> list[str]:
    found = []
    for module, path in modules():
        own = layer_of(module)
        assert own is not None
        allowed = set(ORDER[: ORDER.index(own) + 1])
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        seen: set[tuple[int, str]] = set()
        for line, target, text in imported_modules(tree, module, path.name == "__init__.py"):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = target.split(".")[0]
            if top in FORBIDDEN_THIRD_PARTY.get(own, ()) and (line, text) not in seen:
                seen.add((line, text))
                found.append(f"{where}: {own} module imports {top}: `{text}`")
            layer = layer_of(target)
            if layer is not None and layer not in allowed and (line, text) not in seen:
                seen.add((line, text))
                found.append(f"{where}: {own} module imports the {layer} layer: `{text}`")
    return found


def test_every_layer_imports_only_the_layers_below_it() -> None:
    found = violations()
    assert not found, "imports against runtime <- engines <- training <- export <- cli:\n" + "\n".join(found)


def test_the_checker_sees_every_package_and_lazy_imports() -> None:
    """The walk covers each mapped folder, and an import inside a function is reported."""
    names = {m for m, _ in modules()}
    assert {"edge_ls.pipeline", "edge_ls.engines.plan", "edge_ls.training.trainer"} <= names
    assert {"edge_ls.export.quantize", "edge_ls.cli.detect", "edge_ls.profiles"} <= names
    tree = ast.parse("def f():\n    from edge_ls import training\n    from ..export import tier\n")
    got = {t for _, t, _ in imported_modules(tree, "edge_ls.backends.select", False)}
    assert "edge_ls.training" in got and "edge_ls.export.tier" in got


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("edge_ls.pipeline", "runtime"),
        ("edge_ls.io.source", "runtime"),
        ("edge_ls.profiles", "runtime"),
        ("edge_ls.engines.build", "engines"),
        ("edge_ls.training.metrics", "training"),
        ("edge_ls.export.tier", "export"),
        ("edge_ls.cli", "cli"),
        ("edge_ls.__main__", "cli"),
        ("numpy", None),
    ],
)
def test_layer_of(module: str, layer: str | None) -> None:
    assert layer_of(module) == layer
