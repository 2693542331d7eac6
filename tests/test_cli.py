"""The CLI as an editor uses it: new, preview, check, config errors, and that every command is documented."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import click
import pytest

from newsletter.cli import cli
from tests.conftest import REPO


def test_new_creates_a_draft_from_the_template(publication: Path, run) -> None:
    result = run("new", 'Week "40": LLMs', "--slug", "week-40", "--date", "2023-10-02")
    assert result.exit_code == 0, result.output
    path = publication / "issues" / "2023-10-02-week-40.md"
    assert result.output.strip().endswith("2023-10-02-week-40.md")
    text = path.read_text(encoding="utf-8")
    assert 'title: "Week \\"40\\": LLMs"' in text and "draft: true" in text
    assert run("check").exit_code == 0  # a new issue is valid as it is
    again = run("new", "Other", "--slug", "week-40", "--date", "2023-10-02")
    assert again.exit_code == 1
    assert again.stderr.endswith("already exists (edit it, or choose another --slug or --date)\n")
    assert path.read_text(encoding="utf-8") == text


def test_new_defaults_to_today_and_needs_an_ascii_slug(run, publication: Path) -> None:
    result = run("new", "Top Papers")
    assert result.exit_code == 0
    assert (publication / "issues" / f"{dt.date.today().isoformat()}-top-papers.md").is_file()
    korean = run("new", "한국어 제목")
    assert korean.exit_code == 1 and len(korean.stderr.splitlines()) == 1
    assert "pass --slug in ASCII" in korean.stderr


def test_preview_writes_html_and_text_with_a_sample_subscriber(publication: Path, run, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = run("preview", "2023-09-25-top-ml-papers", "--out", str(out))
    assert result.exit_code == 0, result.output
    for lang in ("ko", "en"):
        html = (out / lang / "email.html").read_text(encoding="utf-8")
        text = (out / lang / "email.txt").read_text(encoding="utf-8")
        assert "__UNSUBSCRIBE_TOKEN__" not in html + text
        assert "unsubscribe?token=" in html
    missing = run("preview", "2099-01-01-nothing")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: 2099-01-01-nothing: no such issue (the newest: 2023-09-25-top-ml-papers)\n"


def test_check_passes_on_the_sample(run) -> None:
    result = run("check")
    assert result.exit_code == 0, result.stderr
    assert result.output == "checked 2 edition file(s): 0 error(s), 0 warning(s)\n"


def test_check_names_a_paper_missing_from_a_translation(publication: Path, run) -> None:
    path = publication / "issues" / "2023-09-25-top-ml-papers.en.md"
    text = path.read_text(encoding="utf-8")
    start = text.index("## Qwen Technical Report")
    end = text.index("## MentalLLaMA")
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    result = run("check")
    assert result.exit_code == 1
    assert re.search(
        r"error: issues/2023-09-25-top-ml-papers.en.md: paper 'Qwen 기술 보고서 / Qwen Technical Report' of "
        r"issues/2023-09-25-top-ml-papers.md:\d+ is missing \(translate it or remove it from both\)",
        result.stderr,
    )


def test_check_names_papers_in_another_order(publication: Path, run) -> None:
    path = publication / "issues" / "2023-09-25-top-ml-papers.en.md"
    text = path.read_text(encoding="utf-8")
    a, b = text.index("## The Reversal Curse"), text.index("## Effective Long-Context")
    c = text.index("## Graph Neural Prompting")
    path.write_text(text[:a] + text[b:c] + text[a:b] + text[c:], encoding="utf-8")
    result = run("check")
    assert result.exit_code == 1
    assert (
        "error: issues/2023-09-25-top-ml-papers.en.md: papers are in another order than in "
        "issues/2023-09-25-top-ml-papers.md (keep the same order in every edition)"
    ) in result.stderr


def test_bad_config_is_one_line(publication: Path, run) -> None:
    config = publication / "pyproject.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('timezone = "Asia/Seoul"', 'timezone = "Mars/Base"'),
        encoding="utf-8",
    )
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: pyproject.toml [tool.newsletter] timezone: 'Mars/Base' is not a time zone (use Asia/Seoul, UTC, …)\n"
    )


def test_missing_publication_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--root", str(tmp_path), "build"], obj={})
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path}/pyproject.toml: not found (pass --root DIR of a publication)\n"


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        found.append((full, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, full + " "))
    return found


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, command in _commands(cli):
        assert command.help and len(command.help) > 20, name
        assert f"newsletter {name}" in readme, f"README.md does not show 'newsletter {name}'"


def test_an_unforeseen_failure_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    """The last net of main(): a crash no command foresaw (here a build that raises RuntimeError) is one line."""
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(
        "import newsletter.render.site as site\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('simulated defect\\nsecond line')\n"
        "site.build_site = broken\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("NEWSLETTER_DEBUG", None)
    command = [sys.executable, "-m", "newsletter", "--root", str(REPO), "build", "--out", str(tmp_path / "site")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr == (
        "Error: newsletter: unexpected RuntimeError: simulated defect "
        "(a bug: run again with NEWSLETTER_DEBUG=1 and report the traceback)\n"
    )
    debug = subprocess.run(command, capture_output=True, text=True, env={**env, "NEWSLETTER_DEBUG": "1"}, timeout=120)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "simulated defect" in debug.stderr


ENV_PROBLEMS = [
    ("NEWSLETTER_SMTP_PORT", "abc", "'abc' is not a port number (use a number from 1 to 65535)"),
    ("NEWSLETTER_SMTP_PORT", "70000", "'70000' is not a port number (use a number from 1 to 65535)"),
    ("NEWSLETTER_SMTP_PORT", "-1", "'-1' is not a port number (use a number from 1 to 65535)"),
    ("NEWSLETTER_SMTP_PORT", "٣", "'٣' is not a port number (use a number from 1 to 65535)"),
    (
        "NEWSLETTER_SMTP_HOST",
        "mail example",
        "'mail example' is not a host name (use smtp.example.com or an IP address)",
    ),
    ("NEWSLETTER_BASE_URL", "http://[::1", "'http://[::1' is not a URL: Invalid IPv6 URL (use https://host/path)"),
    (
        "NEWSLETTER_BASE_URL",
        "https://example.com:99999",
        "'https://example.com:99999' is not a URL: Port out of range 0-65535 (use https://host/path)",
    ),
    ("NEWSLETTER_BASE_URL", "ftp://example.com", "'ftp://example.com' is not an absolute URL (use https://host/path)"),
    ("NEWSLETTER_APP_URL", "ftp://x.com", "'ftp://x.com' is not an absolute URL (use https://host/path)"),
    (
        "NEWSLETTER_APP_URL",
        "https://u:p@x.com",
        "'https://u:p@x.com' has a user name or password; pages and links add a path to it (use https://host/path)",
    ),
    (
        "NEWSLETTER_BASE_URL",
        "https://a.org/\nx",
        "'https://a.org/\\nx' is empty or holds a line break or control character (set it on one line)",
    ),
    ("NEWSLETTER_TRANSPORT", "sms", "'sms' is not a transport (use file, smtp or ses)"),
    ("NEWSLETTER_SES_ENDPOINT_URL", "abc", "'abc' is not an absolute URL (use https://host/path)"),
    (
        "NEWSLETTER_SES_ENDPOINT_URL",
        "http://[::1",
        "'http://[::1' is not a URL: Invalid IPv6 URL (use https://host/path)",
    ),
    (
        "NEWSLETTER_SES_QUEUE_URL",
        "https://[sqs",
        "'https://[sqs' is not a URL: Invalid IPv6 URL (use https://host/path)",
    ),
    ("AWS_REGION", "a b", "'a b' is not an AWS region (use us-east-1, ap-northeast-2, …)"),
    (
        "NEWSLETTER_DATABASE_URL",
        "https://user:secret@example.com/db",
        "'https://user:***@example.com/db' is not a database URL: Can't load plugin: sqlalchemy.dialects:https (use sqlite:///… or postgresql://…)",
    ),
    ("NEWSLETTER_DATABASE_URL", "  ", "'  ' is empty or holds a line break or control character (set it on one line)"),
    *(
        (name, value, f"{value!r} is empty or holds a line break or control character (set it on one line)")
        for name in ("NEWSLETTER_SES_ENDPOINT_URL", "NEWSLETTER_SES_QUEUE_URL")
        for value in ("   ", "\t")
    ),
    ("NEWSLETTER_SMTP_CONNECTIONS", "0", "'0' is not a whole number from 1 to 64 (use 4)"),
    ("NEWSLETTER_SES_MAX_IN_FLIGHT", "513", "'513' is not a whole number from 1 to 512 (use 128)"),
    ("NEWSLETTER_AMBIGUOUS_RETRIES", "x", "'x' is not a whole number from 0 to 3 (use 1)"),
]


@pytest.mark.parametrize(("name", "value", "problem"), ENV_PROBLEMS)
def test_a_bad_environment_override_is_one_line_naming_the_variable(
    run, monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(name, value)
    result = run("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {name}: {problem}\n"


def test_every_environment_override_read_by_the_settings_is_checked() -> None:
    """The list above covers every environment variable config.py reads."""
    source = (REPO / "newsletter" / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"((?:NEWSLETTER|AWS)_[A-Z_]+)"', source))
    assert read == {name for name, _, _ in ENV_PROBLEMS}


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ('base_url = "http://[::1"', "base_url: 'http://[::1' is not a URL: Invalid IPv6 URL (use https://host/path)"),
        (
            'database_url = "nonsense"',
            "database_url: is not a database URL: Could not parse SQLAlchemy URL from given URL string (use sqlite:///… or postgresql://…)",
        ),
        (
            'database_url = "http://[::1"',
            "database_url: is not a database URL: invalid literal for int() with base 10: ':1' (use sqlite:///… or postgresql://…)",
        ),
        ("rate = nan", "rate: nan is not a positive number of messages per second (use 14)"),
        ("rate = inf", "rate: inf is not a positive number of messages per second (use 14)"),
        (
            'languages = ["en-aaaaaaaa-bbbbbbbb-cccccccc"]',
            "languages: 'en-aaaaaaaa-bbbbbbbb-cccccccc' is not a BCP 47 language code (use ko, en, …)",
        ),
    ],
)
def test_a_bad_setting_in_the_file_is_one_line(publication: Path, run, setting: str, problem: str) -> None:
    config = publication / "pyproject.toml"
    key = setting.split(" = ")[0]
    text = config.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith(f"{key} = ")]
    at = lines.index("[tool.newsletter]") + 1
    config.write_text("\n".join([*lines[:at], setting, *lines[at:]]) + "\n", encoding="utf-8")
    result = run("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr == f"Error: pyproject.toml [tool.newsletter] {problem}\n"


def test_smtp_port_in_the_file_must_be_a_port(publication: Path, run) -> None:
    config = publication / "pyproject.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[tool.newsletter.smtp]\nport = 70000\n", encoding="utf-8")
    result = run("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: pyproject.toml [tool.newsletter.smtp] port: 70000 is not a port number (use a number from 1 to 65535)\n"
    )


HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()  # hold the lock until the test says so
db.execute("ROLLBACK")
"""


@pytest.mark.parametrize(
    "command",
    [
        ("subscribers", "add", "new@example.com"),
        ("subscribers", "remove", "kim@example.com"),
        ("subscribers", "import", str(REPO / "subscribers" / "example.csv")),
        ("send", "2023-09-25-top-ml-papers", "--yes"),
    ],
)
def test_a_database_locked_by_another_process_is_one_line(
    publication: Path, run, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    import subprocess
    import sys

    import newsletter.store.database as database

    assert run("subscribers", "add", "kim@example.com").exit_code == 0
    path = publication / "subscribers" / "subscribers.db"
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 200)  # the wait itself is SQLite's; 10 s by default
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"  # evidence, not a sleep
        result = run(*command)
    finally:
        holder.communicate("\n", timeout=30)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {path}: the database is locked by another process (wait for it to finish, or stop it)"
    )
    assert "Traceback" not in result.output
    assert run(*command).exit_code == 0  # once the other process is done, the same command works


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("pyproject.toml", "is not a SQLite database"),
        ("issues", "is a folder, not a SQLite database"),
        ("pyproject.toml/x.db", "cannot be created or opened: Not a directory"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line_naming_it(
    publication: Path, run, monkeypatch: pytest.MonkeyPatch, name: str, what: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{name}")  # relative: inside the publication
    result = run("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {publication / name}: {what} (check NEWSLETTER_DATABASE_URL)\n"


def test_a_store_this_user_may_not_write_is_one_line_naming_it(
    publication: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write to any file: the permission cannot be denied here")
    assert run("subscribers", "add", "kim@example.com").exit_code == 0
    folder = publication / "subscribers"
    (folder / "subscribers.db").chmod(0o400)
    folder.chmod(0o500)
    try:
        result = run("subscribers", "add", "lee@example.com")
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {folder / 'subscribers.db'}: cannot be written: "), result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("rate", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_a_rate_that_is_not_a_finite_number_is_a_usage_error(run, rate: str) -> None:
    result = run("send", "2023-09-25-top-ml-papers", "--yes", "--rate", rate)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: newsletter send --rate: ")
    assert "is not a finite number of messages per second" in result.stderr or "x>=0.01" in result.stderr


HOSTILE = "x\r\nBcc: x@y.com\x1b[2J\x85\u2028end"  # a header injection, an ANSI escape, NEL, LS (argv has no NUL)


def test_every_control_character_in_an_error_is_escaped() -> None:
    from newsletter.errors import ConfigError, IssueError, NewsletterError

    controls = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]))
    for error in (
        NewsletterError(f"a{controls}", f"b{controls}", f"c{controls}"),
        IssueError(f"p{controls}", 3, f"m{controls}"),
        ConfigError("", controls),
    ):
        text = str(error)
        assert not any(ch in controls for ch in text), text
        assert (
            "\\x00" in text
            and "\\r" in text
            and "\\n" in text
            and "\\x1b" in text
            and "\\x85" in text
            and "\\u2028" in text
        )
    assert str(NewsletterError("a\\nb", "plain", "")) == "a\\nb: plain"  # escaped text stays as it is


@pytest.mark.parametrize(
    "args",
    [
        ("send", "2023-09-25-top-ml-papers", "--test", f"a@b.com{HOSTILE}"),  # our error (NewsletterError)
        ("subscribers", "import", f"missing{HOSTILE}.csv"),  # an OSError
        ("send", f"no-such-issue{HOSTILE}", "--yes"),
    ],
    ids=["address", "path", "issue"],
)
def test_control_characters_from_input_never_break_an_error_line(
    run, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-test-secret-of-enough-length-0123456789")
    result = run(*args)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.endswith("\n")
    assert not any(ch in result.stderr[:-1] for ch in "\r\n\x1b\x85\u2028"), result.stderr
    assert "\\r\\nBcc: x@y.com\\x1b[2J\\x85\\u2028end" in result.stderr


def test_a_root_with_control_characters_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    root = tmp_path / f"pub{HOSTILE}"
    result = CliRunner().invoke(cli, ["--root", str(root), "check"], obj={})
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"Error: {tmp_path}/pubx\\r\\nBcc: x@y.com\\x1b[2J\\x85\\u2028end/pyproject.toml: not found (pass --root DIR of a publication)\n"
    )


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        (".", "holds the publication's pyproject.toml"),
        ("..", "holds the publication's pyproject.toml"),
        ("issues", "holds the publication's issues/"),
        ("issues/site", "is inside the publication's issues/"),
        ("templates", "holds the publication's templates/"),
        ("templates/static", "is inside the publication's templates/"),
        ("subscribers", "holds the publication's subscriber store"),
        (".cache", "holds the publication's build cache"),
    ],
)
def test_build_never_writes_over_the_sources(publication: Path, run, out: str, problem: str) -> None:
    assert run("subscribers", "add", "a@example.com").exit_code == 0  # the store exists in subscribers/
    assert run("build").exit_code == 0  # the build cache exists
    before = sorted(p.relative_to(publication) for p in publication.rglob("*") if "site" not in p.parts)
    target = (publication / out).resolve()
    result = run("build", "--out", str(publication / out))
    assert result.exit_code == 1
    assert result.stderr == f"Error: --out {target}: {problem} (build into a folder of its own: site/)\n"
    after = sorted(p.relative_to(publication) for p in publication.rglob("*") if "site" not in p.parts)
    assert after == before
    elsewhere = run("build", "--out", str(publication / "public"))
    assert elsewhere.exit_code == 0, elsewhere.stderr


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        (".", "holds the publication's pyproject.toml"),
        ("issues", "holds the publication's issues/"),
        ("templates", "holds the publication's templates/"),
        ("templates/static", "is inside the publication's templates/"),
    ],
)
def test_preview_never_writes_into_the_sources(publication: Path, run, out: str, problem: str) -> None:
    before = sorted(p.relative_to(publication) for p in publication.rglob("*"))
    result = run("preview", "2023-09-25-top-ml-papers", "--out", str(publication / out))
    assert result.exit_code == 1
    target = (publication / out).resolve()
    assert result.stderr == (
        f"Error: --out {target}: {problem} (write the preview into a folder of its own: preview/)\n"
    )
    assert sorted(p.relative_to(publication) for p in publication.rglob("*")) == before
    elsewhere = run("preview", "2023-09-25-top-ml-papers", "--out", str(publication / "look"))
    assert elsewhere.exit_code == 0, elsewhere.stderr


@pytest.mark.parametrize(
    "command",
    [("status", "2023-09-25-top-ml-papers"), ("templates", "list"), ("check",), ("subscribers", "export")],
)
def test_standard_output_closed_early_stops_quietly(publication: Path, command: tuple[str, ...]) -> None:
    """`newsletter … | head -1`: a reader that has gone is no error to report (exit 1, nothing on stderr)."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "newsletter", "--root", str(publication), *command]
    closed = subprocess.Popen(argv, cwd=publication, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert closed.stdout is not None
    closed.stdout.close()  # before the command writes a byte: every write it makes meets a closed pipe
    _, stderr = closed.communicate(timeout=60)
    assert (closed.returncode, stderr) == (1, b"")
    head = subprocess.run(
        ["sh", "-c", '"$@" | head -1', "sh", *argv], cwd=publication, capture_output=True, timeout=60
    )  # as the tester typed it: whether the command had finished when head left is a race, the silence is not
    assert head.returncode == 0 and head.stderr == b"" and len(head.stdout.splitlines()) == 1


def test_a_file_that_is_no_database_keeps_its_permissions(publication: Path, run, monkeypatch) -> None:
    settings = publication / "pyproject.toml"
    settings.chmod(0o644)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "sqlite:///pyproject.toml")
    assert run("subscribers", "count").exit_code == 1
    assert settings.stat().st_mode & 0o777 == 0o644  # not tightened as a database file would be


def _command_tree(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command of the CLI, groups too, with the words that name it (() for newsletter itself)."""
    found: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _command_tree(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


COMMANDS = _command_tree(cli)
NUMBER_OPTIONS = [
    (path, option.opts[-1])
    for path, command in COMMANDS
    for option in command.params
    if isinstance(option, click.Option)
    and isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType))
]


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) or "newsletter" for path, _ in COMMANDS])
def test_an_unknown_option_is_one_line_naming_the_command_for_every_command(run, path, command) -> None:
    result = run(*path, "--zzqx")
    where = " ".join(("newsletter", *path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {where}: No such option '--zzqx' (see '{where} --help')\n"


def test_the_number_options_are_found() -> None:
    assert {("send", "--rate"), ("events", "--receivers")} <= {
        (" ".join(path), option) for path, option in NUMBER_OPTIONS
    }


@pytest.mark.parametrize(("path", "option"), NUMBER_OPTIONS, ids=[" ".join((*p, o)) for p, o in NUMBER_OPTIONS])
def test_a_number_option_given_words_is_one_line_naming_the_option_for_every_option(run, path, option) -> None:
    result = run(*path, option, "many")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {' '.join(('newsletter', *path))} {option}: 'many' is not a valid ")
