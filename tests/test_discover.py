"""Discovery on real files: globs, explicit paths, rejections, de-duplication, order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchload.errors import UsageError
from batchload.read.discover import _glob, discover, file_format_of


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
        ["data/a.csv", "missing.csv", "data/notes.txt", "data/nested", "dirlink", "broken.csv"],
        base=tree,
    )
    assert [f.name for f in found.files] == ["a.csv"]
    reasons = {r.path: r.reason for r in found.rejected}
    assert reasons["missing.csv"] == "no such file"
    assert reasons["data/notes.txt"].startswith("unknown extension .txt; expected one of .csv")
    assert reasons["data/nested"].startswith("is a directory")
    assert reasons["dirlink"].startswith("is a symbolic link to a directory")
    assert reasons["broken.csv"] == "broken symbolic link"


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
