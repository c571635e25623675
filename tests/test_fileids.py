"""file_id templates: fields, parts, sanitising, refusals and collisions."""

from __future__ import annotations

import pytest

from batchload.errors import UsageError
from batchload.state.fileids import MAX_FIELD_CHARS, FileIdTemplate, check_unique

SHA = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("template", "part", "expected"),
    [
        ("{stem}", None, "prices_2024"),
        ("{stem}", 3, "prices_2024.part-0003"),
        ("{name}", None, "prices_2024.csv"),
        ("{stem}-{sha8}", None, "prices_2024-01234567"),
        ("{stem}.{part}", None, "prices_2024"),
        ("{stem}.{part}", 12, "prices_2024.part-0012"),
        ("eq.{stem}", None, "eq.prices_2024"),
    ],
)
def test_render(template: str, part: int | None, expected: str) -> None:
    rendered = FileIdTemplate(template).render(
        stem="prices_2024", name="prices_2024.csv", sha256=SHA, part=part
    )
    assert rendered == expected


def test_unsafe_characters_from_names_are_replaced() -> None:
    t = FileIdTemplate()
    assert t.render(stem="my prices (v2)", name="", sha256=None, part=None) == "my_prices_v2"
    assert t.render(stem=".hidden", name="", sha256=None, part=None) == "hidden"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{nope}", "unknown field"),
        ("{stem!r}", "unknown field"),
        ("a b {stem}", "cannot hold"),
        ("fixed", "names no file"),
        ("{part}", "names no file"),
        ("{stem", "--file-id template"),
    ],
)
def test_bad_templates_are_refused(template: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FileIdTemplate(template)


def test_a_long_name_keeps_its_start_and_a_hash_of_the_whole() -> None:
    one = FileIdTemplate().render(stem="x" * 200, name="", sha256=None, part=None)
    other = FileIdTemplate().render(stem="x" * 199 + "y", name="", sha256=None, part=None)
    assert len(one) == len(other) == MAX_FIELD_CHARS
    assert one.startswith("x" * 90) and one != other  # still unique, and stable:
    assert one == FileIdTemplate().render(stem="x" * 200, name="", sha256=None, part=None)
    part = FileIdTemplate().render(stem="x" * 200, name="", sha256=None, part=3)
    assert part == f"{one}.part-0003"


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("café", "cafe"),
        ("with spaces", "with_spaces"),
        ("caf\udce9", "caf"),  # a byte that is not UTF-8, as Python names it
        ("-leading", "leading"),
        ("Zürich Ölpreis", "Zurich_Olpreis"),
    ],
)
def test_names_become_stable_ids(stem: str, expected: str) -> None:
    assert FileIdTemplate().render(stem=stem, name="", sha256=None, part=None) == expected


def test_a_name_without_id_characters_is_refused_with_a_reason() -> None:
    with pytest.raises(UsageError, match="has no letter or digit a file_id can hold"):
        FileIdTemplate().render(stem="日本", name="日本.csv", sha256=None, part=None)


def test_too_long_a_template_is_refused() -> None:
    with pytest.raises(UsageError, match="not a valid id"):
        FileIdTemplate("{stem}" + "y" * 130).render(stem="x", name="", sha256=None, part=None)


def test_needs_hash() -> None:
    assert FileIdTemplate("{stem}-{sha8}").needs_hash
    assert not FileIdTemplate().needs_hash


def test_collisions_are_refused_with_both_sources() -> None:
    check_unique([("a", "x/a.csv"), ("b", "x/b.csv"), ("a", "x/a.csv")])
    with pytest.raises(UsageError, match=r"'a' from x/a\.csv and y/a\.csv"):
        check_unique([("a", "x/a.csv"), ("a", "y/a.csv")])
