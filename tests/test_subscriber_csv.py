"""CSV import and export through the CLI: line-numbered errors, nothing written on bad input, safe cells."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.store import open_store, subscriber_by_email


def _csv(tmp_path: Path, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / "list.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_example_csv_imports_with_attributes(run, publication: Path) -> None:
    result = run("subscribers", "import", str(Path(__file__).resolve().parent.parent / "subscribers" / "example.csv"))
    assert result.exit_code == 0, result.stderr
    assert result.output.startswith("Imported 10 new subscriber(s) from 10 row(s)")
    with open_store(load_settings(publication).database_url) as store:
        kim = subscriber_by_email(store, "minji.kim@example.com")
        assert (kim.name, kim.lang, kim.attributes) == ("김민지", "ko", {"signup_page": "landing"})
        assert subscriber_by_email(store, "hyunwoo.choi@example.com").lang is None


def test_bad_rows_are_listed_and_nothing_is_written(run, tmp_path: Path, publication: Path) -> None:
    path = _csv(
        tmp_path,
        "email,name,lang\nok@example.com,Ok,en\nnot-an-address,X,\nb@example.com,B,fr\nOK@example.com,dup,\n",
        bom=True,
    )
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{path}:3: 'not-an-address' is not a valid address (")
    assert lines[1] == f"{path}:4: language 'fr' is not one of ko, en"
    assert lines[2] == (
        f"Error: {path}: 2 bad row(s) of 4; nothing imported (fix them, or pass --skip-invalid to import the good rows)"
    )
    assert run("subscribers", "count").output.splitlines()[-1].split() == ["total", "0"]
    good = run("subscribers", "import", str(path), "--skip-invalid")
    assert good.exit_code == 0
    assert good.stdout.startswith("Imported 1 new subscriber(s) from 4 row(s)") and "1 duplicate(s)" in good.stdout


def test_missing_email_column_is_one_line(run, tmp_path: Path) -> None:
    path = _csv(tmp_path, "mail,name\na@example.com,A\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}:1: has no 'email' column (put a header row first: email,name,lang)\n"


def test_export_neutralises_formulas(run, tmp_path: Path) -> None:
    path = _csv(tmp_path, 'email,name,note\nevil@example.com,"=HYPERLINK(""http://x"")",+1\n')
    assert run("subscribers", "import", str(path)).exit_code == 0
    out = tmp_path / "out.csv"
    assert run("subscribers", "export", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0]["name"] == '\'=HYPERLINK("http://x")' and rows[0]["note"] == "'+1"


@pytest.mark.parametrize("address", ["a@example.com\r\nBcc: x@evil.test", "kim@exämple.com"])
def test_add_validates_the_address(run, address: str) -> None:
    result = run("subscribers", "add", address)
    if "ä" in address:  # internationalised domain: stored as punycode for SMTP and SES
        assert result.exit_code == 0 and "kim@xn--exmple-cua.com" in result.output
    else:
        assert result.exit_code == 1 and "is not a valid address" in result.stderr


def test_add_list_remove_count(run) -> None:
    assert run("subscribers", "add", "kim@example.com", "--name", "김", "--lang", "ko").exit_code == 0
    assert run("subscribers", "list").output == "kim@example.com\tactive\tko\t김\n"
    again = run("subscribers", "add", "KIM@example.com")
    assert (
        again.exit_code == 1
        and again.stderr == "Error: KIM@example.com: is already on the list (active) (nothing to do)\n"
    )
    assert run("subscribers", "remove", "kim@example.com").output == "Removed kim@example.com\n"
    missing = run("subscribers", "remove", "kim@example.com")
    assert missing.exit_code == 1
    assert "active" in run("subscribers", "count").output


def test_lines_of_only_spaces_or_separators_are_blank(run, tmp_path: Path) -> None:
    path = _csv(tmp_path, "email,name,lang\n   \na@example.com,A,en\n,,\n , ,\t\n\n,\nb@example.com,B,\n  ,  ,  ,  \n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Imported 2 new subscriber(s) from 2 row(s)")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('email,name\na@example.com,"' + "x" * 140_000 + '"\n', 2),  # one huge quoted cell
        ("email,name\na@example.com,A\nb@example.com," + "y" * 140_000 + "\n", 3),  # one huge plain cell
        ('email,name\na@example.com,"never closed\n' + "z,\n" * 50_000, 2),  # a quote left open
        ("email" + "e" * 140_000 + ",name\n", 1),  # in the header
    ],
)
def test_a_cell_over_the_field_limit_is_one_line(run, tmp_path: Path, text: str, line: int) -> None:
    path = _csv(tmp_path, text)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path}:{line}: a cell is longer than 131,072 characters (look for a quote that is opened and never closed)\n"
    )
    assert run("subscribers", "count").output.splitlines()[-1].split() == ["total", "0"]


def test_names_longer_than_the_store_keeps_are_refused_on_every_database(
    run, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    longest_ko, longest_en = "한" * 200, "n" * 200
    path = _csv(
        tmp_path,
        f"email,name\nko@example.com,{longest_ko}\nlong@example.com,{'x' * 201}\nen@example.com,{longest_en}\n"
        f"huge@example.com,{'가' * 10_000}\n",
    )
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:3: the name is 201 characters long (shorten it to 200 at most)\n"
        f"{path}:5: the name is 10,000 characters long (shorten it to 200 at most)\n"
        f"Error: {path}: 2 bad row(s) of 4; nothing imported (fix them, or pass --skip-invalid to import the good rows)\n"
    )
    assert run("subscribers", "import", str(path), "--skip-invalid").exit_code == 0
    too_long = run("subscribers", "add", "add@example.com", "--name", "x" * 201)
    assert too_long.exit_code == 1
    assert too_long.stderr == (
        "Error: newsletter subscribers add --name: the name is 201 characters long (shorten it to 200 at most)\n"
    )
    assert run("subscribers", "add", "add@example.com", "--name", "가" * 200).exit_code == 0
    with open_store(database_url) as store:
        assert subscriber_by_email(store, "ko@example.com").name == longest_ko
        assert subscriber_by_email(store, "en@example.com").name == longest_en
        assert subscriber_by_email(store, "long@example.com") is None
        assert subscriber_by_email(store, "add@example.com").name == "가" * 200


def test_an_import_from_a_long_file_name_fits_the_store(
    run, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    path = tmp_path / ("s" * 240 + ".csv")  # 244 bytes: a file system allows 255, the source column 200
    path.write_text("email\na@example.com\n", encoding="utf-8")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    with open_store(database_url) as store:
        assert subscriber_by_email(store, "a@example.com").source == ("import:" + "s" * 240)[:200]


def test_export_is_private_whatever_the_umask(run, tmp_path: Path) -> None:
    import os
    import stat

    assert run("subscribers", "add", "kim@example.com").exit_code == 0
    out = tmp_path / "backup.csv"
    old = os.umask(0o022)
    try:
        assert run("subscribers", "export", str(out)).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text(encoding="utf-8").splitlines()[1].startswith("kim@example.com,")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("character", "named"),
    [
        ("\x00", "the control character U+0000"),
        ("\x1b", "the control character U+001B"),
        ("\x7f", "the control character U+007F"),
        ("\x85", "a line break"),
        ("\t", "a tab"),
    ],
)
def test_a_control_character_in_a_name_is_named_as_what_it_is(run, tmp_path: Path, character: str, named: str) -> None:
    path = _csv(tmp_path, f"email,name\na@example.com,Kim{character}Lee\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{path}:2: the name contains {named} (remove it)"
    added = run("subscribers", "add", "b@example.com", "--name", f"Kim{character}Lee")
    assert added.exit_code == 1
    assert f"Error: newsletter subscribers add --name: the name contains {named} (remove it)" in added.stderr
    assert run("subscribers", "count").output.splitlines()[-1].split() == ["total", "0"]


def test_export_to_a_dash_writes_standard_output(run, tmp_path: Path, publication: Path) -> None:
    assert run("subscribers", "add", "a@example.com", "--name", "Kim").exit_code == 0
    result = run("subscribers", "export", "-")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["email"], row["name"]) for row in rows] == [("a@example.com", "Kim")]
    assert not (publication / "-").exists() and not Path("-").exists()


def test_export_carries_the_tracking_consent_as_given_and_withdrawn(run, publication: Path) -> None:
    """The consent to open and click tracking is a record the subscriber may ask for: when and how it was given,
    and when it was withdrawn."""
    from newsletter.store.consent import set_tracking_consent

    for address in ("a@example.com", "b@example.com", "c@example.com"):
        assert run("subscribers", "add", address).exit_code == 0
    with open_store(load_settings(publication).database_url) as store:
        a, b = subscriber_by_email(store, "a@example.com"), subscriber_by_email(store, "b@example.com")
        assert a is not None and b is not None
        set_tracking_consent(store, a.id, True, "preferences page")
        set_tracking_consent(store, b.id, True, "subscribe form")
        set_tracking_consent(store, b.id, False, "preferences page")
    result = run("subscribers", "export", "-")
    assert result.exit_code == 0, result.stderr
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert rows["a@example.com"]["tracking_consent_at"] and rows["a@example.com"]["tracking_consent_how"] == (
        "preferences page"
    )
    assert not rows["b@example.com"]["tracking_consent_at"] and rows["b@example.com"]["tracking_consent_withdrawn_at"]
    assert not any(rows["c@example.com"][key] for key in ("tracking_consent_at", "tracking_consent_withdrawn_at"))


def test_export_never_replaces_an_existing_file_without_force(run, tmp_path: Path) -> None:
    assert run("subscribers", "add", "kim@example.com").exit_code == 0
    out = tmp_path / "backup.csv"
    out.write_text("keep me\n", encoding="utf-8")
    result = run("subscribers", "export", str(out))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}: exists (pass --force to replace it, or choose another name)\n"
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert run("subscribers", "export", str(out), "--force").exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines()[1].startswith("kim@example.com,")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("name", ["pyproject.toml", "issues/x.md", "issues/new.csv", "templates/static/list.csv"])
def test_export_never_writes_into_the_publications_sources(run, publication: Path, name: str) -> None:
    assert run("subscribers", "add", "kim@example.com").exit_code == 0
    target = publication / name
    target.parent.mkdir(parents=True, exist_ok=True)
    before = target.read_bytes() if target.exists() else None
    for extra in ([], ["--force"]):
        result = run("subscribers", "export", str(target), *extra)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {target}: is a source of the publication"), result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert (target.read_bytes() if target.exists() else None) == before


def test_export_through_a_symlink_into_the_sources_is_refused(run, publication: Path, tmp_path: Path) -> None:
    link = tmp_path / "innocent.csv"
    link.symlink_to(publication / "pyproject.toml")
    before = (publication / "pyproject.toml").read_bytes()
    result = run("subscribers", "export", str(link), "--force")
    assert result.exit_code == 1 and "is a source of the publication" in result.stderr
    assert (publication / "pyproject.toml").read_bytes() == before
