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

from .conftest import free_port, stop_waitress, wait_until

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


def _is_open(sock: socket.socket) -> bool:
    """Whether the server still holds this connection (nothing to read yet), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:  # reset by the server
        return False


def _drip(sockets: list[socket.socket], data: bytes, pace: float, stop: threading.Event) -> threading.Thread:
    """Send `data` a byte every `pace` seconds on every socket (the way a slow client does), until `stop`."""

    def drip() -> None:
        for position in range(len(data)):
            for slow in sockets:
                try:
                    slow.send(data[position : position + 1])
                except OSError:
                    pass
            if stop.wait(pace):
                return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    return thread


def test_slow_clients_do_not_block_normal_requests(serve) -> None:
    """170 clients sending their headers a byte a second, 70 of them from one address: that address keeps its
    50 and the 20 more are closed; a normal request from another address still answers at once."""
    from newsletter.server import PER_ADDRESS_LIMIT

    url = serve()
    port = int(url.rsplit(":", 1)[1])
    request = b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    crowd = {"127.0.0.3": PER_ADDRESS_LIMIT + 20, "127.0.0.4": PER_ADDRESS_LIMIT, "127.0.0.5": PER_ADDRESS_LIMIT}
    sockets = {
        address: [
            socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0)) for _ in range(count)
        ]
        for address, count in crowd.items()
    }
    every = [slow for group in sockets.values() for slow in group]
    stop = threading.Event()
    dripping = _drip(every, request, 1.0, stop)
    try:
        for _ in range(3):
            started = time.monotonic()
            answer = requests.get(url + "/subscribe", timeout=10)  # from 127.0.0.1
            took = time.monotonic() - started
            assert answer.status_code == 200 and took < 3.0, took
        wait_until(
            lambda: sum(map(_is_open, sockets["127.0.0.3"])) == PER_ADDRESS_LIMIT, 10, "the 20 beyond the limit closed"
        )
        assert all(_is_open(slow) for slow in sockets["127.0.0.4"] + sockets["127.0.0.5"])
    finally:
        stop.set()
        dripping.join(5)
        for slow in every:
            slow.close()


class _Guarded:
    """newsletter's guarded waitress server in a thread with a one-line app, for limits set small."""

    def __init__(self, **options) -> None:
        from newsletter.guarded_server import create_server

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]

        self.server = create_server(app, host="127.0.0.1", port=0, threads=2, **options)
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        stop_waitress(self.server, self.thread)

    def get(self, sock: socket.socket) -> bytes:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            answer += sock.recv(4096)
        return answer


@pytest.mark.parametrize(
    ("head", "trickle"),
    [
        (b"", b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 10_000),  # its headers trickle
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n", b"email=" + b"a" * 10_000),  # its body
    ],
    ids=["headers", "body"],
)
def test_a_request_that_trickles_is_closed_at_the_request_deadline(head: bytes, trickle: bytes) -> None:
    """A client that sends a byte every 0.2 s is never idle, yet is closed once its request (its headers, or its
    body after headers sent at once) is 2 s late; a kept-alive connection idle between requests for as long is
    not (channel_timeout covers that)."""
    server = _Guarded(request_timeout=2, cleanup_interval=1, channel_timeout=60)
    stop = threading.Event()
    try:
        kept = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert server.get(kept).startswith(b"HTTP/1.1 200")
        trickler = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        started = time.monotonic()
        trickler.sendall(head)
        dripping = _drip([trickler], trickle, 0.2, stop)
        wait_until(lambda: not _is_open(trickler), 15, "the trickling connection to be closed")
        took = time.monotonic() - started
        assert 2.0 <= took < 10.0, took
        assert _is_open(kept)  # idle as long, but between requests
        kept.setblocking(True)
        assert server.get(kept).startswith(b"HTTP/1.1 200")
    finally:
        stop.set()
        server.close()
    dripping.join(5)


@pytest.mark.parametrize("trusted_proxy", [None, "127.0.0.1"])
def test_the_per_address_limit_spares_the_trusted_proxy(trusted_proxy: str | None) -> None:
    """Beyond 3 connections from one address, the rest are closed at accept; the trusted proxy has no limit."""
    options = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": "x-forwarded-for"} if trusted_proxy else {}
    server = _Guarded(per_address_limit=3, **options)
    try:
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(6)]
        other = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.2", 0))
        assert server.get(other).startswith(b"HTTP/1.1 200")  # accepted after the six: each was let in or not
        expected = 6 if trusted_proxy else 3
        wait_until(lambda: sum(map(_is_open, sockets)) == expected, 10, f"{expected} connections open")
        for sock in sockets:
            sock.close()
    finally:
        server.close()


def test_development_mode_with_a_real_secret_uses_it_and_says_only_what_is_true(serve) -> None:
    url = serve("--dev", secret=REAL_SECRET)
    answer = requests.get(url + "/subscribe", timeout=10)
    assert answer.headers["X-Newsletter-Development"] == "this server answers on this machine only."
    assert "Development mode:</strong> this server answers on this machine only." in answer.text
    assert "development secret" not in answer.text


def test_a_port_in_use_or_a_host_that_cannot_be_used_is_one_line(publication: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cases = [
        ("127.0.0.1", str(port), f"Error: --port: {port} is already in use on 127.0.0.1 (stop what listens there"),
        ("256.1.1.1", "0", "Error: --host: 256.1.1.1 is neither an IP address nor a name that resolves (use "),
        ("nonexistent.invalid", "0", "Error: --host: nonexistent.invalid is neither an IP address nor a name that "),
        ("192.0.2.1", "0", "Error: --host: 192.0.2.1 is not an address of this machine (use one of its addresses"),
    ]
    try:
        for host, port_given, expected in cases:
            done = subprocess.run(
                _serve_command(publication, "--host", host, "--port", port_given),
                env=_env(REAL_SECRET),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1 and done.stdout == "", (host, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and "Error:" not in done.stderr.rsplit("\n", 2)[0], done.stderr
            assert done.stderr.splitlines()[-1].startswith(expected), (host, done.stderr)  # after the SNS warning
    finally:
        taken.close()


REFUSE_FLASK = """
import importlib.abc, sys

class RefuseFlask(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "flask" or name.startswith("flask."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, RefuseFlask())
"""


def test_serve_without_flask_says_to_reinstall(publication: Path, tmp_path: Path) -> None:
    """As if Flask had gone from the environment (a sitecustomize refuses to import it): it is part of the normal
    install, so the one line says to reinstall newsletter, not to add an extra."""
    (tmp_path / "no_flask").mkdir()
    (tmp_path / "no_flask" / "sitecustomize.py").write_text(REFUSE_FLASK)
    env = _env(REAL_SECRET) | {"PYTHONPATH": str(tmp_path / "no_flask")}
    done = subprocess.run(
        _serve_command(publication, "--port", str(free_port())), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == (
        "Error: newsletter serve needs the flask package, which is missing (reinstall it: pip install git-newsletter)\n"
    )


def test_serve_before_a_build_says_so_and_its_404_says_there_is_no_page(
    serve, publication: Path, tmp_path: Path
) -> None:
    import shutil

    url = serve()  # the fixture built the site: this one announces nothing
    shutil.rmtree(publication / "site")
    bare = serve()
    logs = {p.name: p.read_text() for p in tmp_path.glob("serve-*.log")}
    port = bare.rsplit(":", 1)[1]
    wait_until(lambda: "Note:" in (tmp_path / f"serve-{port}.log").read_text(), 30, "the note on site/")
    assert (
        "Note: site/ is not built, so the archive's pages answer 404 (run newsletter build)"
        in (tmp_path / f"serve-{port}.log").read_text()
    )
    assert "Note:" not in logs[f"serve-{url.rsplit(':', 1)[1]}.log"]
    missing = requests.get(bare + "/", headers={"Accept-Language": "en"}, timeout=5)
    assert missing.status_code == 404
    assert "There is no page at this address." in missing.text and "not valid or has expired" not in missing.text
