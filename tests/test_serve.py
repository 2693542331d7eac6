"""`newsletter serve` as a user runs it (a real process on 127.0.0.1): the secret it needs, development mode,
slow clients, and the confirmation mails a stopped server left due."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from .conftest import free_port, wait_until

REAL_SECRET = "a-real-secret-for-the-serve-tests"


def _env(secret: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSLETTER_")}
    if secret is not None:
        env["NEWSLETTER_SECRET_KEY"] = secret
    return env


def _serve_command(publication: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--root", str(publication), "serve", *args]


def _answers(url: str) -> bool:
    try:
        requests.get(url + "/subscribe", timeout=1)
        return True
    except requests.ConnectionError:
        return False


@pytest.fixture
def serve(publication: Path, run, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start `newsletter serve ARGS…` on a free port (the site built first); returns its URL. Stopped at the end."""
    assert run("build").exit_code == 0
    started: list[subprocess.Popen] = []

    def start(*args: str, secret: str | None = REAL_SECRET) -> str:
        port = free_port()
        log = (tmp_path / f"serve-{port}.log").open("wb")  # never a pipe: a full pipe would stall the server
        process = subprocess.Popen(
            _serve_command(publication, "--port", str(port), *args), stdout=log, stderr=log, env=_env(secret)
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url) or process.poll() is not None, 30, f"{url} to answer")
        assert process.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
        return url

    yield start
    for process in started:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _refusal(publication: Path, *args: str, secret: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _serve_command(publication, "--port", str(free_port()), *args),
        env=_env(secret),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_without_a_secret_refuses_to_start(publication: Path) -> None:
    done = _refusal(publication, secret=None)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: NEWSLETTER_SECRET_KEY: is not set; ")
    assert "newsletter serve --dev" in done.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_serve_refuses_the_public_development_secret_as_the_real_key(publication: Path, host: str) -> None:
    from newsletter.tokens import DEVELOPMENT_SECRET

    done = _refusal(publication, "--host", host, secret=DEVELOPMENT_SECRET)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: NEWSLETTER_SECRET_KEY: is the public development secret, ")
    assert done.stderr.count("\n") == 1 and "secrets.token_urlsafe(32)" in done.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_development_mode_refuses_an_address_that_is_not_loopback(publication: Path, host: str) -> None:
    done = _refusal(publication, "--dev", "--host", host, secret=None)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"Error: --dev: serves only on a loopback address, not {host} (its links can be forged by anyone) "
        "(use --host 127.0.0.1, or set NEWSLETTER_SECRET_KEY and leave out --dev)\n"
    )


def test_development_mode_announces_itself_on_every_page(serve, publication: Path) -> None:
    from newsletter.config import load_settings
    from newsletter.store import SubscriberStatus, add_subscriber, open_store
    from newsletter.tokens import DEVELOPMENT_SECRET, confirm_token, unsubscribe_token

    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        kim = add_subscriber(store, "kim@example.com", lang="ko")
        pending = add_subscriber(store, "new@example.com", status=SubscriberStatus.PENDING, source="web")
    url = serve("--dev", secret=None)
    dev = DEVELOPMENT_SECRET.encode()
    unsubscribe = unsubscribe_token(dev, settings.list_id, kim.id)
    confirm = confirm_token(dev, settings.list_id, pending.id)
    pages = [
        ("GET", "/"),
        ("GET", "/en/"),
        ("GET", "/en/issues/2023-09-25-top-ml-papers/"),
        ("GET", "/nope/"),
        ("GET", "/subscribe"),
        ("GET", f"/unsubscribe?token={unsubscribe}"),
        ("GET", f"/preferences?token={unsubscribe}"),
        ("GET", f"/confirm?token={confirm}"),
        ("GET", "/unsubscribe?token=bad"),
        ("PUT", "/subscribe"),
        ("POST", "/subscribe"),
        ("POST", f"/confirm?token={confirm}"),
        ("POST", f"/unsubscribe?token={unsubscribe}"),
    ]
    for method, path in pages:
        answer = requests.request(method, url + path, timeout=10)
        assert answer.headers["X-Newsletter-Development"], path
        assert answer.headers["Content-Type"].startswith("text/html"), path
        body = answer.text
        banner = r"<body[^>]*>\s*<p class=\"development-banner\" role=\"alert\"><strong>Development mode:</strong> "
        assert re.search(banner + "links are checked with the public development secret", body), (method, path)
        assert body.count("development-banner") == 1, (method, path)
    assert answer.headers["X-Newsletter-Development"].startswith("links are checked with the public development")
    feed = requests.get(url + "/feed.xml", timeout=10)
    assert feed.headers["X-Newsletter-Development"] and "development-banner" not in feed.text


def test_a_real_secret_server_refuses_links_signed_with_the_development_secret(serve, publication: Path) -> None:
    from newsletter.config import load_settings
    from newsletter.store import SubscriberStatus, add_subscriber, get_subscriber, open_store
    from newsletter.tokens import DEVELOPMENT_SECRET, unsubscribe_token

    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        people = [add_subscriber(store, f"p{n}@example.com") for n in range(20)]
        url = serve()
        for person in people:
            forged = unsubscribe_token(DEVELOPMENT_SECRET.encode(), settings.list_id, person.id)
            answer = requests.post(f"{url}/unsubscribe?token={forged}", data="List-Unsubscribe=One-Click", timeout=10)
            assert answer.status_code == 400 and person.email not in answer.text
            assert "X-Newsletter-Development" not in answer.headers
        assert {get_subscriber(store, p.id).status for p in people} == {SubscriberStatus.ACTIVE}
        real = unsubscribe_token(REAL_SECRET.encode(), settings.list_id, people[0].id)
        assert requests.post(f"{url}/unsubscribe?token={real}", data="List-Unsubscribe=One-Click", timeout=10).ok
        assert get_subscriber(store, people[0].id).status == SubscriberStatus.UNSUBSCRIBED


def test_a_restarted_server_sends_the_confirmations_left_due(serve, publication: Path) -> None:
    from email import policy
    from email.parser import BytesParser

    from newsletter.config import load_settings
    from newsletter.store import open_store, request_subscription
    from newsletter.tokens import verify_confirm_token
    from newsletter.transports.file import file_name

    settings = load_settings(publication)
    addresses = [f"left{n}@example.com" for n in range(5)]
    with open_store(settings.database_url) as store:  # what a server stopped after answering left behind
        for address in addresses:
            request_subscription(store, address, "en", consent="web form", confirm=True)
    outbox = publication / "outbox" / "confirmations"
    assert not outbox.exists()
    serve()
    wait_until(
        lambda: all((outbox / file_name(address)).exists() for address in addresses), 30, "the left confirmations"
    )
    for address in addresses:
        message = BytesParser(policy=policy.default).parsebytes((outbox / file_name(address)).read_bytes())
        token = re.search(r"/confirm\?token=(\S+)", message.get_content()).group(1)
        assert verify_confirm_token(REAL_SECRET.encode(), settings.list_id, token, max_age=60) is not None


SLOW_CLIENTS = 150


def test_slow_clients_do_not_block_normal_requests(serve) -> None:
    """150 clients sending their headers a byte every 2 s; a normal request still answers at once."""
    url = serve()
    port = int(url.rsplit(":", 1)[1])
    request = b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(SLOW_CLIENTS)]
    stop = threading.Event()

    def drip() -> None:
        position = 0
        while not stop.is_set() and position < len(request):
            for slow in sockets:
                try:
                    slow.send(request[position : position + 1])
                except OSError:
                    pass
            position += 1
            stop.wait(2.0)  # the pace of a slow client

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        for _ in range(3):
            started = time.monotonic()
            answer = requests.get(url + "/subscribe", timeout=10)
            took = time.monotonic() - started
            assert answer.status_code == 200 and took < 3.0, took
        # every slow client is still connected (accepted and waiting), not turned away
        open_ones = 0
        for slow in sockets:
            slow.setblocking(False)
            try:
                open_ones += slow.recv(1) != b""
            except BlockingIOError:
                open_ones += 1
        assert open_ones == SLOW_CLIENTS
    finally:
        stop.set()
        dripping.join(5)
        for slow in sockets:
            slow.close()


def test_development_mode_with_a_real_secret_uses_it_and_says_only_what_is_true(serve) -> None:
    url = serve("--dev", secret=REAL_SECRET)
    answer = requests.get(url + "/subscribe", timeout=10)
    assert answer.headers["X-Newsletter-Development"] == "this server answers on this machine only."
    assert "Development mode:</strong> this server answers on this machine only." in answer.text
    assert "development secret" not in answer.text
