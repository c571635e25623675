"""Every name the docs tell a user to import is importable, and ``batchload`` exports
what its ``__all__`` says (the docs and the package cannot drift apart unseen)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import batchload

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FROM_IMPORT = re.compile(r"from (batchload(?:\.\w+)*) import (\([\w,\s]+\)|[\w, ]+)")
DOTTED = re.compile(r"(?<![\w/.-])batchload(?:\.\w+)+")


def shown_names() -> set[str]:
    """``module:name`` for every ``from batchload... import X`` and ``batchload.x.y`` in
    the docs (a dotted name is a module, or an attribute of the longest module prefix)."""
    names: set[str] = set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for module, imported in FROM_IMPORT.findall(text):
            listed = imported.strip("()").split(",")
            names |= {f"{module}:{n.strip()}" for n in listed if n.strip()}
        names |= {f"{dotted}:" for dotted in DOTTED.findall(text)}
    return names


def resolve(shown: str) -> object:
    module, _, attribute = shown.partition(":")
    parts = module.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in [*parts[cut:], *([attribute] if attribute else [])]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(module)


def test_the_docs_show_names() -> None:
    assert "batchload:upload_files" in shown_names()  # the scan finds what is there


@pytest.mark.parametrize("shown", sorted(shown_names()))
def test_every_name_the_docs_show_is_importable(shown: str) -> None:
    resolve(shown)


def test_the_package_exports_its_all() -> None:
    assert batchload.__all__ == sorted(batchload.__all__)
    for name in batchload.__all__:
        assert getattr(batchload, name) is not None
    from batchload import upload_dataframe_async  # the async twin the README promises

    assert upload_dataframe_async.__name__ == "upload_dataframe_async"
