"""CSV import and export of subscribers, with line-numbered errors; the store work is in store.py.

Import: a header row with `email` (required), `name` and `lang` (optional); every other column is kept
as an attribute. UTF-8 with or without a BOM. Each address is checked with email-validator (syntax
only, no DNS). Nothing is written unless every row is good, or `skip_invalid` is given.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from .config import LANGUAGE_PATTERN
from .errors import NewsletterError, one_line
from .files import read_regular_file
from .store import (
    ImportCounts,
    Store,
    SubscriberStatus,
    email_key,
    insert_subscribers,
    iter_subscribers,
    metadata,
)

_COLUMNS = metadata.tables["subscribers"].c
NAME_LIMIT = cast(sa.String, _COLUMNS.name.type).length or 200  # characters the store keeps (PostgreSQL refuses more)
SOURCE_LIMIT = cast(sa.String, _COLUMNS.source.type).length or 200
CSV_LIMIT = 200_000_000  # bytes of an imported CSV: a million subscribers at 200 bytes a row
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: spreadsheets run these
EXPORT_COLUMNS = [
    "email",
    "name",
    "lang",
    "status",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "unsubscribe_method",
    # the consent to open and click tracking, as given (a record the subscriber may ask to see)
    "tracking_consent_at",
    "tracking_consent_how",
    "tracking_consent_withdrawn_at",
]


@dataclass
class ImportReport:
    """What an import found and did."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)  # "file:line: reason"
    duplicates: int = 0  # the same address (in any case) earlier in the file
    counts: ImportCounts = field(default_factory=ImportCounts)


def normalise_address(text: str) -> str:
    """The address as it will be stored and sent: validated, domain in ASCII (IDNA); ValueError if not."""
    try:
        checked = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as err:
        raise ValueError(str(err)) from None
    return checked.ascii_email or checked.normalized


def read_rows(path: Path, report: ImportReport, languages: tuple[str, ...]) -> list[dict[str, Any]]:
    """Good rows of the CSV at `path`; every bad row is added to `report.problems` with its line number."""
    where = one_line(str(path))  # each problem line shows it
    raw = read_regular_file(path, where, limit=CSV_LIMIT)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise NewsletterError(
            where, f"is not UTF-8 (byte 0x{err.object[err.start]:02x} at offset {err.start})", "save it as UTF-8 CSV"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return _good_rows(_records(reader, where), reader, where, report, languages)


def _records(reader: csv.DictReader[str], where: str) -> Iterator[dict[Any, Any]]:
    """The reader's rows; a csv error (such as a cell over the field limit) stops the import, naming the
    first line after the last row read."""
    while True:
        start = reader.line_num + 1
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise NewsletterError(f"{where}:{start}", *_csv_problem(err)) from None


def _csv_problem(err: csv.Error) -> tuple[str, str]:
    """(what, what to do) for an error of Python's csv reader."""
    if "field larger than field limit" in str(err):
        return (
            f"a cell is longer than {csv.field_size_limit():,} characters",
            "look for a quote that is opened and never closed",
        )
    return f"is not valid CSV: {err}", "save it again as CSV from your spreadsheet"


def _shown(text: str, limit: int = 80) -> str:
    """A cell's text for a one-line message: quoted, control characters escaped, long text cut."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    if cut.isprintable():
        return f"'{cut}'"
    return repr(cut)


def name_problem(name: str) -> str:
    """Why `name` cannot be a subscriber's name, as `<what> (<what to do>)`; empty when it can.

    A control character would break out of the To: header or drive a terminal; the store keeps NAME_LIMIT.
    """
    control = next((ch for ch in name if unicodedata.category(ch) == "Cc"), None)
    if control is not None:
        return f"the name contains {_control_name(control)} (remove it)"
    if len(name) > NAME_LIMIT:
        return f"the name is {len(name):,} characters long (shorten it to {NAME_LIMIT} at most)"
    return ""


def _control_name(ch: str) -> str:
    """How a message names a control character: a line break, a tab, or its code point."""
    if ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85":
        return "a line break"
    if ch == "\t":
        return "a tab"
    return f"the control character U+{ord(ch):04X}"


def _blank(record: dict[Any, Any]) -> bool:
    """A line of nothing but spaces or separators: skipped like an empty line."""
    cells: list[Any] = []
    for value in record.values():  # cells past the header come as one list
        cells.extend(value if isinstance(value, list) else [value or ""])
    return all(not str(cell).strip() for cell in cells)


def _good_rows(
    records: Iterator[dict[Any, Any]],
    reader: csv.DictReader[str],
    where: str,
    report: ImportReport,
    languages: tuple[str, ...],
) -> list[dict[str, Any]]:
    try:
        header = reader.fieldnames
    except csv.Error as err:
        raise NewsletterError(f"{where}:1", *_csv_problem(err)) from None
    fields = [name.strip().lower() for name in (header or [])]
    if "email" not in fields:
        raise NewsletterError(f"{where}:1", "has no 'email' column", "put a header row first: email,name,lang")
    reader.fieldnames = fields
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        line = reader.line_num
        if _blank(record):
            continue
        report.rows += 1
        if None in record:  # more cells than headers
            report.problems.append(f"{where}:{line}: more cells than columns (quote cells that contain commas)")
            continue
        raw_email = (record.get("email") or "").strip()
        try:
            email = normalise_address(raw_email)
        except ValueError as err:
            report.problems.append(f"{where}:{line}: {_shown(raw_email)} is not a valid address ({_shown(str(err))})")
            continue
        name = (record.get("name") or "").strip()
        problem = name_problem(name)
        if problem:
            report.problems.append(f"{where}:{line}: {problem}")
            continue
        lang = (record.get("lang") or "").strip() or None
        if lang is not None and (not LANGUAGE_PATTERN.match(lang) or lang not in languages):
            report.problems.append(f"{where}:{line}: language {_shown(lang)} is not one of {', '.join(languages)}")
            continue
        key = email_key(email)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        attributes = {k: v for k, v in record.items() if k not in {"email", "name", "lang"} and v not in (None, "")}
        rows.append({"email": email, "name": name, "lang": lang, "attributes": attributes})
    return rows


def import_subscribers(
    store: Store, path: Path, languages: tuple[str, ...], *, skip_invalid: bool = False
) -> ImportReport:
    """Import a CSV file; with bad rows, write nothing unless `skip_invalid`. Never re-activates anyone."""
    report = ImportReport()
    rows = read_rows(path, report, languages)
    if report.problems and not skip_invalid:
        return report
    report.counts = insert_subscribers(store, rows, source=f"import:{path.name}"[:SOURCE_LIMIT])
    return report


def _cell(value: Any) -> str:
    """A cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # SQLite hands back naive times; the store keeps UTC
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_subscribers(store: Store, out: IO[str], status: SubscriberStatus | None = None) -> int:
    """Write subscribers as CSV (attributes as extra columns); returns how many."""
    extra = sorted({key for s in iter_subscribers(store, status) for key in s.attributes})  # streamed twice
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS + extra)
    count = 0
    for s in iter_subscribers(store, status):
        count += 1
        values = [
            s.email,
            s.name,
            s.lang,
            s.status.value,
            s.source,
            s.created_at,
            s.confirmed_at,
            s.unsubscribed_at,
            s.unsubscribe_method,
            s.tracking_consent_at,
            s.tracking_consent_how,
            s.tracking_consent_withdrawn_at,
        ]
        writer.writerow([_cell(v) for v in values] + [_cell(s.attributes.get(key)) for key in extra])
    return count


def _source_of_the_publication(path: Path, root: Path) -> bool:
    """Whether `path` (symlinks followed) is the publication's settings or inside its issues/ or templates/."""
    target, root = path.resolve(), root.resolve()
    return target == root / "pyproject.toml" or any(target.is_relative_to(root / d) for d in ("issues", "templates"))


def _place_without_replacing(temporary: str, path: Path) -> None:
    """Give `temporary` the name `path`; FileExistsError if a file took that name after the first check."""
    try:
        os.link(temporary, path)  # atomic, and refuses an existing name
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT, some network mounts)
        if path.exists() or path.is_symlink():
            raise FileExistsError(path) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def export_to_file(
    store: Store, path: Path, status: SubscriberStatus | None, *, root: Path, force: bool = False
) -> int:
    """Export to `path`, private (0600) and whole or not at all; returns how many subscribers.

    An existing file is replaced only with `force`; the publication's own sources (pyproject.toml, issues/,
    templates/) never are, since subscriber data there would be committed and published.
    """
    where = one_line(str(path))
    if _source_of_the_publication(path, root):
        raise NewsletterError(
            where, "is a source of the publication (settings, issues/ or templates/)", "export somewhere else"
        )
    if not force and (path.exists() or path.is_symlink()):
        raise NewsletterError(where, "exists", "pass --force to replace it, or choose another name")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with open(handle, "w", encoding="utf-8", newline="") as out:
            count = export_subscribers(store, out, status)
        if force:
            os.replace(temporary, path)
        else:
            _place_without_replacing(temporary, path)
    except FileExistsError:
        Path(temporary).unlink(missing_ok=True)
        raise NewsletterError(where, "exists", "pass --force to replace it, or choose another name") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count
