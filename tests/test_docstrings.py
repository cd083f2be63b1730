"""Every public function, class and method of lab/ and widgets/ shows one runnable example,
and every example in their docstrings runs and prints what it says.

The examples need no corpus, GPU or network: they build tiny models and texts, or load a
shipped model, so that a docstring cannot drift from the code without this test failing.
"""
from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import pkgutil
import tempfile
from pathlib import Path

import pytest

import lab
import widgets

SKIPPED_MODULES = {"lab.__main__"}          # `python -m lab`: running it would parse pytest's argv
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules() -> list[str]:
    names = []
    for pkg in (lab, widgets):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
            if info.name not in SKIPPED_MODULES:
                names.append(info.name)
    return sorted(names)


def public_definitions(path: Path) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every public function and class of a module, and of every
    public method and property of its public classes."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            out.append((node.name, node))
            if isinstance(node, ast.ClassDef):
                out += [(f"{node.name}.{m.name}", m) for m in node.body
                        if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]
    return out


def runnable_examples(docstring: str | None) -> int:
    """How many examples of a docstring doctest would run (``+SKIP`` ones do not count)."""
    examples = doctest.DocTestParser().get_examples(docstring or "")
    return sum(not ex.options.get(doctest.SKIP, False) for ex in examples)


def module_path(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin)


@pytest.mark.parametrize("name", modules())
def test_every_public_definition_shows_a_runnable_example(name):
    missing = [qual for qual, node in public_definitions(module_path(name))
               if not runnable_examples(ast.get_docstring(node))]
    assert not missing, f"{name}: no runnable >>> example in the docstring of {', '.join(missing)}"


@pytest.mark.parametrize("name", modules())
def test_the_examples_run(name, monkeypatch, tmp_path):
    # examples write under tempfile.mkdtemp(): here that is inside tmp_path, which pytest
    # removes, and a stray relative path lands there too
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (printed above)"


def test_the_check_sees_a_missing_and_a_skipped_example(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('def shown():\n    """>>> 1 + 1\n    2\n    """\n\n'
                      'def skipped():\n    """>>> 1 + 1  # doctest: +SKIP\n    2\n    """\n\n'
                      'class Bare:\n    def method(self):\n        pass\n\n'
                      'def _private():\n    pass\n')
    found = {qual: runnable_examples(ast.get_docstring(node)) for qual, node in public_definitions(source)}
    assert found == {"shown": 1, "skipped": 0, "Bare": 0, "Bare.method": 0}
