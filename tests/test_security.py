"""Security rules read from the source with ``ast`` (issue 13, Deliver 5): no shell strings (nothing
user-given ever reaches a shell), every ``torch.load`` with ``weights_only=True`` (a checkpoint cannot
run code), no pickle. Model files are verified against their manifest before loading:
``tests/test_manifest.py``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_ls", "export", "training", "engines", "bench", "profiles")
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _dotted(node: ast.AST) -> tuple[str, ...]:
    """``a.b.c`` as ("a", "b", "c"); () for anything that is not a plain dotted name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return (node.id, *reversed(parts))
    return ()


def _is_stringy(node: ast.AST) -> bool:
    """A command built as one string (an f-string, a concatenation, a literal with spaces)."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return " " in node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _is_stringy(node.left) or _is_stringy(node.right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
    ):
        return isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)
    return False


def problems(path: Path) -> list[str]:
    """Every breach of the rules in one file, as ``file:line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(REPO)
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess", "torch", "pickle"):
            names = {a.name for a in node.names}
            banned = names & {"system", "popen", "getoutput", "getstatusoutput", "load"}
            if banned:
                out.append(f"{rel}:{node.lineno}: from {node.module} import {', '.join(sorted(banned))}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m in ("pickle", "cPickle", "dill", "shelve") for m in mods):
                out.append(f"{rel}:{node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                out.append(f"{rel}:{node.lineno}: shell= other than False")
        if name[-2:] in SHELL_CALLS:
            out.append(f"{rel}:{node.lineno}: {'.'.join(name)} runs a shell string")
        subprocess_call = len(name) >= 2 and name[-2] == "subprocess" and name[-1] in SUBPROCESS_CALLS
        if subprocess_call and node.args and _is_stringy(node.args[0]):
            out.append(f"{rel}:{node.lineno}: subprocess.{name[-1]} with a command built as a string")
        if name[-2:] == ("torch", "load"):
            weights_only = [kw for kw in node.keywords if kw.arg == "weights_only"]
            ok = (
                weights_only
                and isinstance(weights_only[0].value, ast.Constant)
                and weights_only[0].value.value is True
            )
            if not ok:
                out.append(f"{rel}:{node.lineno}: torch.load without weights_only=True")
    return out


def test_the_scan_covers_the_packages() -> None:
    files = list(sources())
    assert len(files) > 50 and any(p.name == "trainer.py" for p in files)


def test_no_shell_strings_no_unsafe_loads() -> None:
    found = [p for path in sources() for p in problems(path)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ("import subprocess\nsubprocess.run(f'gdalinfo {path}', shell=True)\n", "shell="),
        ("import os\nos.system('rm ' + path)\n", "os.system"),
        ("import os\nos.popen(cmd)\n", "os.popen"),
        ("import subprocess\nsubprocess.check_output('nvidia-smi -L')\n", "built as a string"),
        ("import torch\ntorch.load(p)\n", "weights_only"),
        ("import torch\ntorch.load(p, weights_only=False)\n", "weights_only"),
        ("import pickle\n", "pickle"),
        ("from torch import load\n", "import load"),
    ],
)
def test_the_scan_catches_each_breach(tmp_path: Path, code: str, what: str, monkeypatch) -> None:
    """The rules are not vacuous: each planted breach is found."""
    monkeypatch.setattr("tests.test_security.REPO", tmp_path)
    planted = tmp_path / "edge_ls" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(code)
    found = problems(planted)
    assert found and what in found[0], found
    safe = [
        "import subprocess, torch",
        "subprocess.run(['nvidia-smi', '-L'], check=True)",
        "torch.load(p, weights_only=True)",
    ]
    planted.write_text("\n".join(safe) + "\n")
    assert problems(planted) == []
