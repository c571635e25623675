"""The README is a front page and the docs hold together: a length cap, and every relative
link and image in README.md and docs/*.md resolving to a file inside the repository.

External ``http(s)`` links are not fetched (there may be no network). A ``#anchor`` into
a markdown page must name one of its headings, slugged as GitHub slugs them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 200

# [text](target) and ![alt](target), with an optional "title"; and [label]: target.
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
_FENCE = re.compile(r"^\s{0,3}(```|~~~).*?^\s{0,3}\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code(text: str) -> str:
    """Markdown with fenced blocks and code spans blanked: links there are only text."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Every link and image target of a markdown text, outside code."""
    prose = without_code(text)
    return [m.group(1) for m in _INLINE.finditer(prose)] + _REFERENCE.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a markdown page's headings make (a repeated heading gets -1, -2...)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def too_long(readme: str) -> bool:
    """True when a README is longer than a front page may be."""
    return len(readme.splitlines()) > MAX_README_LINES


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of ``page``: missing, outside ``root``, bad anchor."""
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if not target or _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page.resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{target}: points outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: {resolved.name} has no heading #{anchor}")
    return problems


# --- the repository's own pages --------------------------------------------------------------


def test_the_readme_is_a_front_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert not too_long(text), (
        f"README.md has {len(text.splitlines())} lines; at most {MAX_README_LINES}: "
        "move detail to docs/"
    )


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert links(page.read_text(encoding="utf-8")) or page != README, "the README links nothing"
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(README.read_text(encoding="utf-8"))
        if target and not _EXTERNAL.match(target)
    }
    unlinked = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


# --- the checks themselves can fail ----------------------------------------------------------


def test_a_long_readme_or_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Resume and the manifest\n")
    (tmp_path / "logo.png").write_bytes(b"")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n"
        "[ok](docs/guide.md) [anchor](docs/guide.md#resume-and-the-manifest) ![logo](logo.png)\n"
        "[web](https://example.com/x) [here](#x) `[code](nope.md)`\n\n"
        "```sh\n[fenced](nope.md)\n```\n"
        "[gone](docs/missing.md) ![img](results/latest.png) [bad](docs/guide.md#nope)\n"
        "[outside](../shared/ingestion-api.md)\n\n"
        "[ref]: docs/old.md\n"
    )
    problems = broken_links(page, root=tmp_path)
    assert sorted(problems) == sorted(
        [
            "docs/missing.md: no such file",
            "results/latest.png: no such file",
            "docs/guide.md#nope: guide.md has no heading #nope",
            "../shared/ingestion-api.md: points outside the repository",
            "docs/old.md: no such file",
            "#x: README.md has no heading #x",
        ]
    )
    # the README before it became a front page had 938 lines
    assert too_long("line\n" * 938) and not too_long("line\n" * MAX_README_LINES)


def test_slugs_match_githubs() -> None:
    assert slug("Output, exit codes and common errors") == "output-exit-codes-and-common-errors"
    assert slug("`batchload schema diff`") == "batchload-schema-diff"
    assert slug("Plans: several uploads in one run") == "plans-several-uploads-in-one-run"
