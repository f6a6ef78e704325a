"""A cheap guard, for the main suite on 3.11, that the torch-free modules stay Python 3.8 code (JetPack 5).

The real check is .ci/run's device stage under 3.8; this one fails on the developer's machine first. It parses
every module that does not import torch at its top with the 3.8 grammar, and looks for the standard library
names that 3.8 lacks and a test run might not reach.
"""

from __future__ import annotations

import ast

import pytest

from conftest import REPO

FOLDERS = ("aknet_edge", "runtime", "export", "calibration")
# Python 3.9+ methods and functions, by attribute name (str.removeprefix, Path.is_relative_to, int.bit_count, ...)
NEWER_NAMES = {"removeprefix": "3.9", "removesuffix": "3.9", "is_relative_to": "3.9", "with_stem": "3.9",
               "randbytes": "3.9", "to_thread": "3.9", "cancel_futures": "3.9", "waitstatus_to_exitcode": "3.9",
               "unparse": "3.9", "lcm": "3.9", "bit_count": "3.10", "pairwise": "3.10"}
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def _imports_torch_at_top(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def _device_modules():
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if not _imports_torch_at_top(ast.parse(path.read_text(), str(path))):
                yield path


def _annotations(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            yield node.annotation
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            yield node.returns


def _new_style(annotation: ast.AST) -> bool:
    """``X | Y`` (3.10) or ``list[int]`` (3.9): a TypeError on 3.8 where the annotation is evaluated."""
    return any((isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr))
               or (isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id in BUILTIN_GENERICS)
               for n in ast.walk(annotation))


DEVICE_MODULES = list(_device_modules())


def test_the_runtime_is_among_them():
    names = {p.relative_to(REPO).as_posix() for p in DEVICE_MODULES}
    assert {"runtime/recognizer.py", "aknet_edge/package.py", "aknet_edge/run.py", "aknet_edge/build.py"} <= names


@pytest.mark.parametrize("path", DEVICE_MODULES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_parses_as_python_38_and_uses_no_newer_names(path):
    source = path.read_text()
    where = path.relative_to(REPO).as_posix()
    tree = ast.parse(source, where, feature_version=(3, 8))  # match, except*, parenthesised with: SyntaxError
    newer = sorted({f"{node.attr} (Python {NEWER_NAMES[node.attr]}) at line {node.lineno}"
                    for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in NEWER_NAMES})
    assert not newer, f"{where} uses {newer}; JetPack 5 runs Python 3.8"
    if any(_new_style(a) for a in _annotations(tree)):
        assert "from __future__ import annotations" in source, (
            f"{where} writes X | Y or list[...] annotations: add `from __future__ import annotations` so that "
            "Python 3.8 does not evaluate them")
