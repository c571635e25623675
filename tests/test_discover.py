"""Discovery on real files: globs, explicit paths, rejections, de-duplication, order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchload.errors import UsageError
from batchload.read.discover import Filters, _glob, discover, file_format_of, file_list


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "data" / "nested").mkdir(parents=True)
    for name in ["b.csv", "a.csv", "c.parquet", "d.XLSX", "notes.txt"]:
        (tmp_path / "data" / name).write_text("x\n1\n")
    (tmp_path / "data" / "nested" / "e.csv").write_text("x\n1\n")
    return tmp_path


def test_glob_selects_sorted_known_formats(tree: Path) -> None:
    found = discover(["data/*"], base=tree)
    assert [f.name for f in found.files] == ["a.csv", "b.csv", "c.parquet", "d.XLSX"]
    assert [f.file_format for f in found.files] == ["csv", "csv", "parquet", "xlsx"]
    assert [Path(r.path).name for r in found.ignored] == ["notes.txt"]  # not the directory
    assert "unknown extension .txt" in found.ignored[0].reason
    assert found.rejected == ()
    first = found.files[0]
    assert first.path.is_absolute()
    assert first.size == 4
    assert first.mtime_ns == os.stat(first.path).st_mtime_ns


def test_recursive_glob(tree: Path) -> None:
    found = discover(["data/**/*.csv"], base=tree)
    assert [f.name for f in found.files] == ["a.csv", "b.csv", "e.csv"]


def test_duplicates_collapse_to_one_file(tree: Path) -> None:
    (tree / "link.csv").symlink_to(tree / "data" / "a.csv")
    found = discover(["data/a.csv", "./data/a.csv", "data/*.csv", "link.csv"], base=tree)
    assert [f.name for f in found.files] == ["a.csv", "b.csv"]


def test_explicit_paths_get_reasons(tree: Path) -> None:
    (tree / "dirlink").symlink_to(tree / "data" / "nested", target_is_directory=True)
    (tree / "broken.csv").symlink_to(tree / "gone.csv")
    found = discover(
        ["data/a.csv", "missing.csv", "data/notes.txt", "broken.csv"],
        base=tree,
    )
    assert [f.name for f in found.files] == ["a.csv"]
    reasons = {r.path: r.reason for r in found.rejected}
    assert reasons == {
        "missing.csv": "no such file",
        "data/notes.txt": reasons["data/notes.txt"],
        "broken.csv": "broken symbolic link",
    }
    assert reasons["data/notes.txt"].startswith("unknown extension .txt; expected one of .csv")


def test_no_files_is_a_usage_error_that_says_why(tree: Path) -> None:
    with pytest.raises(UsageError, match=r"no files matched: nothing/\*\.csv: matched no files"):
        discover(["nothing/*.csv"], base=tree)
    with pytest.raises(UsageError, match=r"missing\.csv: no such file"):
        discover(["missing.csv"], base=tree)
    assert discover(["nothing/*.csv"], base=tree, require=False).files == ()


def test_unmatched_glob_beside_matches_is_reported_not_fatal(tree: Path) -> None:
    found = discover(["data/*.csv", "data/*.xls"], base=tree)
    assert len(found.files) == 2
    assert found.unmatched == ("data/*.xls",)


def test_file_format_of() -> None:
    assert file_format_of("x.PQ") == "parquet"
    assert file_format_of("x.csv.gz") == "csv"
    assert file_format_of("x.CSV.ZST") == "csv"
    assert file_format_of("x.json.gz") is None
    assert file_format_of("x.gz") is None


def test_recursive_glob_does_not_follow_directory_links_into_loops(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x\n")
    (data / "sub" / "b.csv").write_text("x\n")
    (data / "sub" / "up").symlink_to(data)  # a loop: data/sub/up/sub/up/...
    (data / "again").symlink_to(data)  # and another beside it
    found = discover([str(data / "**" / "*.csv")])
    assert [f.path for f in found.files] == [data / "a.csv", data / "sub" / "b.csv"]


def test_recursive_glob_matches_as_glob_does_on_a_plain_tree(tree: Path) -> None:
    import glob

    (tree / ".hidden").mkdir()
    (tree / ".hidden" / "h.csv").write_text("x\n")
    for pattern in ("**/*.csv", "**", "*/**/*.parquet", "**/.hidden/*.csv"):
        full = str(tree / pattern)
        expected = sorted(glob.glob(full, recursive=True))
        assert sorted(_glob(full)) == expected, pattern


# --- folders, filters and lists --------------------------------------------------------------


@pytest.fixture
def backfill(tmp_path: Path) -> Path:
    """A folder as backfills come: years, an archive, hidden files, a README, a manifest."""
    for name in [
        "2023/q1.csv",
        "2023/q2.parquet",
        "2024/q1.csv",
        "archive/old.csv",
        ".hidden/secret.csv",
        "2024/.partial.csv",
        "README.md",
        "state/m.sqlite",
        "state/stray.csv",
    ]:
        path = tmp_path / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n1\n")
    return tmp_path


def names(found: object, base: Path) -> list[str]:
    return [str(f.path.relative_to(base / "data")) for f in found.files]  # type: ignore[attr-defined]


def test_a_folder_means_every_file_under_it_but_hidden_ones_and_the_manifests(
    backfill: Path,
) -> None:
    found = discover(["data"], base=backfill, skip=[backfill / "data" / "state"])
    assert names(found, backfill) == [
        "2023/q1.csv",
        "2023/q2.parquet",
        "2024/q1.csv",
        "archive/old.csv",
    ]
    assert [(r.path.rsplit("/", 1)[-1], r.reason[:22]) for r in found.ignored] == [
        ("README.md", "unknown extension .md;")
    ]
    assert found.rejected == () and found.unmatched == ()
    # a link to a folder, named, is walked too; the same files are one file
    (backfill / "link").symlink_to(backfill / "data" / "2023", target_is_directory=True)
    assert len(discover(["link", "data/2023"], base=backfill).files) == 2


def test_include_and_exclude_narrow_folders_and_globs_not_named_files(backfill: Path) -> None:
    def selected(*patterns: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()):
        found = discover(
            list(patterns),
            base=backfill,
            filters=Filters(include, exclude),
            skip=[backfill / "data" / "state"],
        )
        return names(found, backfill)

    assert selected("data", include=("*.csv",)) == ["2023/q1.csv", "2024/q1.csv", "archive/old.csv"]
    assert selected("data", exclude=("archive",)) == [
        "2023/q1.csv",
        "2023/q2.parquet",
        "2024/q1.csv",
    ]
    assert selected("data", include=("2024/*",)) == ["2024/q1.csv"]
    assert selected("data", include=("*.csv",), exclude=("2023/*", "old.*")) == ["2024/q1.csv"]
    assert selected("data/**/*.csv", exclude=("q1.csv",)) == ["archive/old.csv", "state/stray.csv"]
    assert selected("data/archive/old.csv", exclude=("*",)) == ["archive/old.csv"]


def test_a_folder_rejects_what_it_cannot_read_and_says_when_it_holds_nothing(
    backfill: Path,
) -> None:
    (backfill / "data" / "2024" / "gone.csv").symlink_to(backfill / "nowhere.csv")
    found = discover(["data/2024"], base=backfill)
    assert [(r.path, r.reason) for r in found.rejected] == [
        ("data/2024/gone.csv", "broken symbolic link")
    ]
    (backfill / "empty").mkdir()
    with pytest.raises(UsageError, match="no files matched: empty: matched no files"):
        discover(["empty"], base=backfill)


def test_listed_paths_are_literal_and_lists_skip_comments(tmp_path: Path) -> None:
    (tmp_path / "odd[1].csv").write_text("x\n1\n")
    (tmp_path / "odd1.csv").write_text("x\n1\n")
    text = "# from last night's export\n\n  odd[1].csv  \n#odd1.csv\nmissing.csv\n"
    listed = file_list(text.splitlines(keepends=True))
    assert listed == ("odd[1].csv", "missing.csv")
    found = discover([], base=tmp_path, listed=listed)
    assert [f.name for f in found.files] == ["odd[1].csv"]  # not the glob's odd1.csv
    assert [(r.path, r.reason) for r in found.rejected] == [("missing.csv", "no such file")]
