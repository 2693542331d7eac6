"""Shared fixtures: a copy of the sample publication, the CLI, and real peers started on 127.0.0.1.

A test that needs a system package (chromium, PostgreSQL) skips with the reason when it is missing;
under CI (CI=true) that skip fails the run instead, because CI must have installed it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def missing_system_package(reason: str) -> None:
    """Skip, or under CI fail: CI installs every package the tests need."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def publication(tmp_path: Path) -> Path:
    """A fresh copy of the sample publication (config, templates, issues)."""
    root = tmp_path / "pub"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copytree(REPO / "issues", root / "issues")
    return root


@pytest.fixture
def run(publication: Path) -> Callable[..., Result]:
    """Run the CLI against the publication copy: run("build", "--out", …)."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, ["--root", str(publication), *args], obj={}, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        missing_system_package("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def write_issue(publication: Path, name: str, text: str | bytes) -> Path:
    path = publication / "issues" / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------- real peers


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for servers that cannot bind port 0 themselves)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], bool], seconds: float = 10.0, what: str = "condition") -> None:
    """Poll with a deadline (never a bare sleep)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, and the PostgreSQL of NEWSLETTER_TEST_DATABASE_URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'subscribers.db'}"
    return fresh_postgresql()


def fresh_postgresql() -> str:
    """The PostgreSQL of NEWSLETTER_TEST_DATABASE_URL in an empty schema of this test run's own (dropped and made
    again), so two test runs on one server never drop each other's tables; the URL's connections work in it."""
    url = os.environ.get("NEWSLETTER_TEST_DATABASE_URL")
    if not url:
        missing_system_package("PostgreSQL tests need NEWSLETTER_TEST_DATABASE_URL (postgresql://…; .ci/run sets it)")
    import sqlalchemy as sa

    schema = f"test_{os.getpid()}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    _SCHEMAS.add((url, schema))
    return url + ("&" if "?" in url else "?") + "options=" + urllib.parse.quote(f"-csearch_path={schema}")


_SCHEMAS: set[tuple[str, str]] = set()


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    """Drop the schemas this run made, at its end."""
    yield
    if not _SCHEMAS:
        return
    import sqlalchemy as sa

    for url, schema in _SCHEMAS:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def store(database_url: str):
    from newsletter.store import open_store

    with open_store(database_url) as opened:
        yield opened


class RecordingHandler:
    """An SMTP server's handler: keeps every envelope; refuses chosen recipients like a real server."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.drop_after: int | None = None  # close the connection after this many messages (421)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address.startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.startswith("defer"):
            return "451 4.3.0 Mailbox temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        import asyncio

        self.envelopes.append(envelope)
        if self.drop_after is not None and len(self.envelopes) % self.drop_after == 0:
            # after the reply goes out, the server drops the connection, as busy servers do
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 2.0.0 Ok: queued"


@contextlib.contextmanager
def running_smtp(handler):
    """An aiosmtpd server on 127.0.0.1 with `handler`, for the block; yields its port."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    """An aiosmtpd server on 127.0.0.1; yields (handler, port)."""
    handler = RecordingHandler()
    with running_smtp(handler) as port:
        yield handler, port


@pytest.fixture(scope="session")
def moto_server():
    """moto's standalone server on 127.0.0.1 (port chosen by the OS); yields its endpoint URL."""
    pytest.importorskip("moto", reason="moto is in the test extra")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials and region for boto3 in this test, where none are set (moto checks none). Per test, not
    per session: a session-wide setdefault would see another test's monkeypatched ones and keep nothing."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        if not os.environ.get(name):
            monkeypatch.setenv(name, value)


@pytest.fixture
def ses(moto_server: str, aws_test_credentials: None):
    """A reset SES on moto with the sample's sender domain verified; yields (endpoint URL, sent messages)."""
    import boto3
    import requests
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server).verify_domain_identity(
        Domain="papers.example.com"
    )
    yield moto_server, ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


class WebServer:
    """The web app under waitress on 127.0.0.1 in a thread."""

    def __init__(self, app) -> None:
        import waitress

        self.server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import requests

        wait_until(lambda: _responds(requests, self.url), what=f"{self.url} to answer")

    def close(self) -> None:
        stop_waitress(self.server, self.thread)


def stop_waitress(server: Any, thread: threading.Thread) -> None:
    """Stop a waitress server running in `thread` from inside its own loop (closing its sockets from here races
    its select: EBADF), and wait for the thread to end."""

    def close_every_channel() -> None:
        for channel in list(server._map.values()):
            channel.close()

    try:
        server.trigger.pull_trigger(close_every_channel)
    except OSError:  # the trigger's pipe is gone (seen 1 run in ~3 of a long suite, cause unknown): stop directly
        server.close()
        close_every_channel()
    thread.join(timeout=10)
    server.task_dispatcher.shutdown()
    assert not thread.is_alive(), "waitress did not stop"


def _responds(requests, url: str) -> bool:
    try:
        requests.get(url + "/robots.txt", timeout=1)
        return True
    except requests.ConnectionError:
        return False


@pytest.fixture
def web(publication: Path, run):
    """The sample publication built and served: yields (WebServer, store, settings, clock list)."""
    from newsletter.config import load_settings
    from newsletter.events import sns_handler
    from newsletter.store import open_store
    from newsletter.web import create_app

    assert run("build").exit_code == 0
    settings = load_settings(publication)
    clock = [1_800_000_000.0]
    store = open_store(settings.database_url)

    def fetch(url: str) -> bytes:  # the sample sets no SNS topic, so nothing is ever fetched (tests/test_sns.py)
        raise AssertionError(f"the web app fetched {url}")

    handler = sns_handler(settings, store=store, fetch=fetch)
    app = create_app(settings, store, clock=lambda: clock[0], events_handler=handler, secret=WEB_SECRET)
    server = WebServer(app)
    server.app = app
    try:
        yield server, store, settings, clock
    finally:
        server.close()
        store.close()


WEB_SECRET = b"the-web-fixture-secret-for-tests"  # the `web` app's NEWSLETTER_SECRET_KEY


class ThreadedHttpServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port chosen by the OS) serving `handler` in a thread, over TLS with
    `tls`; `url` is its root, `close()` stops it."""

    def __init__(self, handler: type, tls: Any = None) -> None:
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"{'https' if tls is not None else 'http'}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ThreadedHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def make_certificate(common_name: str, ip_address: str | None = None):
    """(RSA private key, self-signed certificate) made here, valid for a day."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if ip_address:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip_address))]), critical=False
        )
    return key, builder.sign(key, hashes.SHA256())


def smtp_settings(publication: Path, port: int, database_url: str) -> Any:
    """The publication's settings sending through the plain SMTP server on 127.0.0.1:`port`, with `database_url`."""
    import dataclasses

    from newsletter.config import SmtpSettings, load_settings

    return dataclasses.replace(
        load_settings(publication),
        transport="smtp",
        database_url=database_url,
        smtp=SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=10),
    )


def ses_process_env(endpoint_url: str, secret_key: str, database_url: str | None = None) -> dict[str, str]:
    """The environment of a `newsletter send` process against the fake SES at `endpoint_url`: no NEWSLETTER_
    variable of the test run's own, test credentials, and the store of `database_url` when one is given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_SES_ENDPOINT_URL=endpoint_url,
        NEWSLETTER_SECRET_KEY=secret_key,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    if database_url is not None:
        env["NEWSLETTER_DATABASE_URL"] = database_url
    return env
