"""`newsletter init`: a publication that works at once, made whole or not at all; and the package as a pip user
gets it (a wheel in a fresh venv, no checkout beside it) driven from `init` to `serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.starter import SCAFFOLD
from tests.conftest import free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
POSTAL = "1 Main Street, Springfield, IL 62701, USA"
SECRET = "a-test-secret-of-enough-length-0123456789"


def _init(*args: str, cwd: Path, input: str | None = None) -> Result:
    runner = CliRunner()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, ["init", *args], obj={}, input=input, catch_exceptions=False)
    finally:
        os.chdir(old)


def _run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(root), *args], obj={}, catch_exceptions=False)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _scaffold_names(folder: str) -> set[str]:
    base = SCAFFOLD / folder
    return {p.relative_to(base).as_posix().removesuffix(".j2") for p in base.rglob("*") if p.is_file()}


def test_init_yes_makes_a_publication_that_checks_builds_and_sends(tmp_path: Path) -> None:
    result = _init(
        "weekly", "--yes", "--title", "Weekly Notes", "--base-url", "https://notes.example.org/",
        "--language", "en", "--language", "ko", "--postal-address", POSTAL, "--timezone", "Asia/Seoul",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    root = tmp_path / "weekly"
    settings = load_settings(root)
    assert (settings.title, settings.base_url, settings.language, settings.languages) == (
        "Weekly Notes", "https://notes.example.org", "en", ("ko",),
    )  # fmt: skip
    assert str(settings.from_address) == "Weekly Notes <newsletter@notes.example.org>"
    assert (settings.postal_address, str(settings.timezone), settings.transport) == (POSTAL, "Asia/Seoul", "file")
    files = _tree(root)
    drafts = [name for name in files if name.startswith("issues/")]
    assert len(drafts) == 1 and drafts[0].endswith("-welcome.md")
    assert {".gitignore", "README.md", "pyproject.toml", "subscribers/README.md", "templates/README.md"} <= set(files)
    assert {f"deploy/{name}" for name in _scaffold_names("deploy")} <= set(files)
    assert not any(name.startswith(".github/") for name in files)  # only with --ci github
    ignored = files[".gitignore"].decode().splitlines()
    for line in ("/site/", "/outbox/", "/preview/", "/.cache/", "/subscribers/*.db"):
        assert line in ignored
    assert "Weekly Notes" in files["README.md"].decode()
    lines = result.output.splitlines()
    assert lines[0] == "Made a publication in weekly/:"
    assert "  wrote pyproject.toml" in lines and "  cd weekly" in lines and "  newsletter check" in lines
    assert not any(p.name.startswith(".weekly.init-") for p in tmp_path.iterdir())

    checked = _run(root, "check")
    assert checked.exit_code == 0, checked.stderr
    assert checked.stdout == "checked 1 edition file(s): 0 error(s), 0 warning(s)\n"
    slug = Path(drafts[0]).stem
    assert _run(root, "preview", slug).exit_code == 0
    assert "Welcome to Weekly Notes" in (root / "preview" / slug / "en" / "email.html").read_text(encoding="utf-8")
    assert POSTAL in (root / "preview" / slug / "en" / "email.txt").read_text(encoding="utf-8")
    first = _run(root, "build")  # nothing is out yet (the issue is a draft): the archive and its search still build
    assert first.exit_code == 0, first.stderr
    assert first.stdout.startswith("Built") and " 0 issue(s)" in first.stdout
    draft = root / drafts[0]
    draft.write_text(draft.read_text(encoding="utf-8").replace("draft: true\n", ""), encoding="utf-8")
    built = _run(root, "build", "--future")  # the draft is dated today at 09:00 local: maybe still to come
    assert built.exit_code == 0, built.stderr
    assert built.stdout.startswith("Built site/: 1 issue(s)") or built.stdout.startswith(
        f"Built {root}/site/: 1 issue(s)"
    )
    assert _run(root, "subscribers", "add", "reader@example.com").exit_code == 0
    sent = _run(root, "send", slug, "--yes")
    assert sent.exit_code == 0, sent.stderr
    assert len(list((root / "outbox" / slug).glob("*.eml"))) == 1


def test_init_asks_with_defaults(tmp_path: Path) -> None:
    answers = "\n".join(["My Letter", "", "https://letter.example.com", "ko, en", "", POSTAL, "UTC"]) + "\n"
    result = _init("letter", cwd=tmp_path, input=answers)
    assert result.exit_code == 0, result.output
    settings = load_settings(tmp_path / "letter")
    assert settings.title == "My Letter"
    assert settings.description == "News from My Letter."
    assert (settings.language, settings.languages) == ("ko", ("en",))
    assert str(settings.from_address) == "My Letter <newsletter@letter.example.com>"
    assert settings.postal_address == POSTAL
    assert "Postal address (printed in every email; CAN-SPAM):" in result.output


def test_a_wrong_answer_is_said_and_asked_again(tmp_path: Path) -> None:
    answers = [
        "Letter",
        "",
        "ftp://letter.example.com",  # refused, asked again
        "https://letter.example.com",
        "https://letter.example.com",  # the app on the archive's host: refused with --ci github
        "https://app.letter.example.com",
        "ko_KR",  # refused: BCP 47 writes ko-KR
        "ko, en",
        "",
        POSTAL,
        "Mars/Olympus",
        "UTC",
    ]
    result = _init("letter", "--ci", "github", cwd=tmp_path, input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert (
        "Error: --base-url: 'ftp://letter.example.com' is not an absolute URL (use https://host/path)" in result.output
    )
    assert "Error: --app-url: is needed with --ci github, and must differ from --base-url" in result.output
    assert "Error: --language: 'ko_KR' is not in BCP 47's canonical form (use ko-KR)" in result.output
    assert "Error: --timezone: 'Mars/Olympus' is not a time zone" in result.output
    settings = load_settings(tmp_path / "letter")
    assert (settings.base_url, settings.app_url) == ("https://letter.example.com", "https://app.letter.example.com")
    assert (settings.language, settings.languages, str(settings.timezone)) == ("ko", ("en",), "UTC")


def test_the_default_sender_quotes_a_name_with_a_dot_or_comma(tmp_path: Path) -> None:
    result = _init(
        "who", "--yes", "--postal-address", POSTAL, "--title", "Dr. Who, Weekly", "--base-url", "https://who.example.org",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sender = load_settings(tmp_path / "who").from_address
    assert (sender.display_name, sender.addr_spec) == ("Dr. Who, Weekly", "newsletter@who.example.org")


def test_init_writes_the_list_id_and_check_warns_when_it_is_derived(tmp_path: Path) -> None:
    """The list id signs every unsubscribe link: derived from base_url, it would change when the archive moves."""
    assert (
        _init("pub", "--yes", "--postal-address", POSTAL, "--base-url", "https://a.example.com", cwd=tmp_path).exit_code
        == 0
    )
    root = tmp_path / "pub"
    settings_file = root / "pyproject.toml"
    assert tomllib.loads(settings_file.read_text(encoding="utf-8"))["tool"]["newsletter"]["list_id"] == (
        "newsletter.a.example.com"
    )
    checked = _run(root, "check")
    assert checked.exit_code == 0 and "list_id" not in checked.stderr
    text = settings_file.read_text(encoding="utf-8")
    settings_file.write_text("\n".join(line for line in text.splitlines() if not line.startswith("list_id")) + "\n")
    checked = _run(root, "check")
    assert checked.exit_code == 0
    assert (
        "warning: pyproject.toml [tool.newsletter] list_id: is not set, so it is derived from base_url "
        "(newsletter.a.example.com); moving the archive would change it and break every unsubscribe link already "
        'mailed (add list_id = "newsletter.a.example.com")'
    ) in checked.stderr.splitlines()


def test_init_refuses_a_publication_and_changes_nothing(tmp_path: Path) -> None:
    assert _init("pub", "--yes", "--postal-address", POSTAL, cwd=tmp_path).exit_code == 0
    before = _tree(tmp_path / "pub")
    result = _init("pub", "--yes", "--postal-address", POSTAL, cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path}/pub/pyproject.toml: already has [tool.newsletter] "
        "(this folder is a publication already: edit its settings)\n"
    )
    assert _tree(tmp_path / "pub") == before


def test_init_appends_the_table_to_a_pyproject_without_it_and_keeps_what_is_there(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "mine"\n', encoding="utf-8")
    (folder / "README.md").write_text("# my repo\n", encoding="utf-8")
    (folder / ".gitignore").write_text("*.pyc\n/site/", encoding="utf-8")
    result = _init("--yes", "--postal-address", POSTAL, "--title", "Repo News", cwd=folder)
    assert result.exit_code == 0, result.output
    assert "Made a publication in ./:" in result.output.splitlines()[0]
    assert "  appended [tool.newsletter] to pyproject.toml" in result.output.splitlines()
    assert "  kept README.md (it was there)" in result.output.splitlines()
    document = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    assert document["project"] == {"name": "mine"}
    assert document["tool"]["newsletter"]["title"] == "Repo News"
    assert (folder / "README.md").read_text(encoding="utf-8") == "# my repo\n"
    ignored = (folder / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ignored[:2] == ["*.pyc", "/site/"] and ignored.count("/site/") == 1 and "/outbox/" in ignored
    assert {"*.env", ".env", "/subscribers/*.db"} <= set(ignored)  # secrets and personal data never go into git
    assert _run(folder, "check").exit_code == 0
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".repo")) == []


def test_a_gitignore_that_has_every_line_is_kept(tmp_path: Path) -> None:
    ours = (SCAFFOLD / "publication" / "dot-gitignore").read_bytes()
    (tmp_path / ".gitignore").write_bytes(ours)
    result = _init("--yes", "--postal-address", POSTAL, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "  kept .gitignore (it was there)" in result.output.splitlines()
    assert (tmp_path / ".gitignore").read_bytes() == ours


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--base-url", "ftp://example.com"),
            "Error: --base-url: 'ftp://example.com' is not an absolute URL (use https://host/path)",
        ),
        (
            ("--language", "kr"),
            "Error: --language: 'kr' has no wording in the theme (did you mean 'ko'? the theme has en, ko)",
        ),
        (
            ("--timezone", "Mars/Olympus"),
            "Error: --timezone: 'Mars/Olympus' is not a time zone",
        ),
        (("--timezone", "asia/seoul"), "Error: --timezone: 'asia/seoul' is not a time zone (did you mean Asia/Seoul?)"),
        (("--language", "ko_KR"), "Error: --language: 'ko_KR' is not in BCP 47's canonical form (use ko-KR)"),
        (("--app-url", "https://app.example.com/?x=1"), "Error: --app-url: 'https://app.example.com/?x=1' has a query"),
        (("--from", "not an address"), "Error: --from: 'not an address' is not one email address"),
        (("--title", "two\nlines"), "Error: --title: contains a line break (write it on one line)"),
        (("--ci", "github"), "Error: --app-url: is needed with --yes: GitHub Pages serves the archive"),
        (
            ("--ci", "github", "--base-url", "https://me.github.io/x", "--app-url", "https://me.github.io/x/"),
            "Error: --app-url: is needed with --ci github, and must differ from --base-url",
        ),
    ],
)
def test_a_bad_value_is_one_line_and_nothing_is_written(tmp_path: Path, args: tuple[str, ...], line: str) -> None:
    result = _init("pub", "--yes", "--postal-address", POSTAL, *args, cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith(line), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a staging folder


def test_a_bad_value_leaves_an_existing_folder_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = _init("--yes", "--postal-address", POSTAL, "--from", "not an address", cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --from: "), result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_yes_without_a_postal_address_is_refused(tmp_path: Path) -> None:
    result = _init("pub", "--yes", cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: --postal-address: is needed with --yes: every email carries the sender's postal address (CAN-SPAM) "
        '(pass --postal-address "street, city, country")\n'
    )
    assert list(tmp_path.iterdir()) == []


def test_a_language_the_theme_lacks_gets_the_english_wording_to_translate(tmp_path: Path) -> None:
    result = _init("pub", "--yes", "--postal-address", POSTAL, "--language", "de-AT", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    root = tmp_path / "pub"
    strings = tomllib.loads((root / "templates" / "strings.toml").read_text(encoding="utf-8"))
    assert strings["de-AT"]["og_locale"] == "de_AT"
    assert strings["de-AT"]["view_in_browser"] == "View in your browser"
    assert _run(root, "check").exit_code == 0


def test_init_ci_github_writes_the_workflows(tmp_path: Path) -> None:
    result = _init(
        "pub", "--yes", "--postal-address", POSTAL, "--ci", "github", "--app-url", "https://app.example.com",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_settings(tmp_path / "pub").app_url == "https://app.example.com"
    written = {p.relative_to(tmp_path / "pub" / ".github" / "workflows").as_posix()
               for p in (tmp_path / "pub" / ".github" / "workflows").rglob("*") if p.is_file()}  # fmt: skip
    assert written == _scaffold_names("github")


# ---------------------------------------------------------------- as a pip user gets it


def _wait_for_page(url: str, process: subprocess.Popen[bytes], log: Path) -> bytes:
    found: list[bytes] = []

    def answers() -> bool:
        assert process.poll() is None, log.read_text(encoding="utf-8", errors="replace")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                found.append(response.read())
                return True
        except OSError:
            return False

    wait_until(answers, seconds=30, what=f"newsletter serve to answer {url}")
    return found[0]


def test_a_wheel_in_a_fresh_venv_runs_init_check_build_preview_send_and_serve(tmp_path: Path) -> None:
    """pip's view: the wheel installed non-editable into a new venv, run from an empty folder far from any
    checkout. Its dependencies come from this venv's site-packages (a .pth file: nothing is downloaded)."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "newsletter", source / "newsletter", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    wheel = next((tmp_path / "dist").glob("git_newsletter-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    new_site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    (new_site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    shutil.rmtree(source)  # no checkout left anywhere near

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    newsletter = str(venv / "bin" / "newsletter")

    def run(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [newsletter, *args], cwd=cwd, env={**env, **extra}, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"newsletter {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    where = subprocess.run(
        [python, "-c", "import newsletter.render.templates as t; print(t.__file__); print(t.THEME_DIR)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(new_site), where  # the wheel's copy, not the checkout's
    assert (Path(where[1]) / "email.mjml.j2").is_file() and Path(where[1]).is_relative_to(new_site)

    run("init", "weekly", "--yes", "--title", "Weekly", "--postal-address", POSTAL, cwd=work)
    root = work / "weekly"
    assert run("check", cwd=root).stdout == "checked 1 edition file(s): 0 error(s), 0 warning(s)\n"
    draft = next((root / "issues").glob("*-welcome.md"))
    run("preview", draft.stem, cwd=root)
    assert (root / "preview" / draft.stem / "en" / "email.html").is_file()
    draft.write_text(draft.read_text(encoding="utf-8").replace("draft: true\n", ""), encoding="utf-8")
    assert "1 issue(s)" in run("build", "--future", cwd=root).stdout  # dated today at 09:00: maybe still to come
    run("subscribers", "add", "reader@example.com", cwd=root)
    sent = run("send", draft.stem, "--yes", cwd=root)
    assert "Sent 1, failed 0" in sent.stdout
    assert len(list((root / "outbox" / draft.stem).glob("*.eml"))) == 1

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [newsletter, "serve", "--port", str(port)], cwd=root, env={**env, "NEWSLETTER_SECRET_KEY": SECRET},
            stdout=output, stderr=output,
        )  # fmt: skip
        try:
            home = _wait_for_page(f"http://127.0.0.1:{port}/", process, log)
            assert b"Weekly" in home
            page = _wait_for_page(f"http://127.0.0.1:{port}/issues/{draft.stem}/", process, log)
            assert b"Welcome to Weekly" in page
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_init_takes_the_root_option_as_its_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--root", str(tmp_path / "pub"), "init", "--yes", "--postal-address", POSTAL], obj={}
    )
    assert result.exit_code == 0, result.output
    assert load_settings(tmp_path / "pub").postal_address == POSTAL


@pytest.mark.parametrize(
    ("direct_url", "spec"),
    [
        (None, "git-newsletter==0.1.0"),  # from an index
        ({"url": "file:///home/me/newsletter", "dir_info": {}}, "git-newsletter==0.1.0"),  # a folder here
        (
            {"url": "https://github.com/me/newsletter.git", "vcs_info": {"vcs": "git", "commit_id": "ab12cd"}},
            "git-newsletter @ git+https://github.com/me/newsletter.git@ab12cd",
        ),
        (
            {"url": "https://example.org/git_newsletter-0.1.0.tar.gz", "archive_info": {}},
            "git-newsletter @ https://example.org/git_newsletter-0.1.0.tar.gz",
        ),
    ],
)
def test_init_writes_where_this_newsletter_was_installed_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_url: dict | None, spec: str
) -> None:
    """PEP 610's direct_url.json of the installed distribution (found first on sys.path) says where pip got it."""
    import json
    import sys

    from newsletter import __version__
    from newsletter.starter import installed_from

    info = tmp_path / f"git_newsletter-{__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: git-newsletter\nVersion: {__version__}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert installed_from() == spec.replace("0.1.0", __version__)
