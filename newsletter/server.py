"""`newsletter serve`: the web app and its confirmation worker under waitress, with the secret it needs and the
connection limits that keep slow clients from blocking everyone else.

The web stack (Flask, waitress) is imported only inside `serve`, so one missing from a broken install is one line.
"""

from __future__ import annotations

import errno
import ipaddress
import resource
from collections.abc import Callable
from typing import Any

from .config import Settings
from .errors import ConfigError, MissingExtraError
from .tokens import server_secret_key

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
CONNECTION_LIMIT = 1000  # open connections waitress keeps; slow clients beyond this wait in the backlog
PER_ADDRESS_LIMIT = 50  # open connections one client address may hold (not the trusted proxy's)
REQUEST_TIMEOUT = 15  # seconds a request, headers and body, may take to arrive in full, however steadily it trickles
WEB_STACK = {"flask", "werkzeug", "waitress", "cryptography", "itsdangerous", "blinker"}  # of the normal install


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def waitress_options(host: str, port: int, threads: int, trusted_proxy: str | None = None) -> dict[str, Any]:
    """waitress's settings: slow or idle clients cost a socket each, never a worker thread or the server.

    Headers and bodies are read by waitress's event loop before a thread sees the request, so a client that
    sends a byte every few seconds holds only a connection: allow many (poll(), not select()'s 1024 limit),
    close idle ones after 30 s, and cap header and body sizes. A reverse proxy adds total timeouts (README).
    """
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "threads": threads,
        "ident": "newsletter",
        "connection_limit": _connection_limit(CONNECTION_LIMIT),
        "asyncore_use_poll": True,
        "channel_timeout": 30,  # seconds a connection may send nothing (default 120)
        "cleanup_interval": 5,  # how often idle connections are looked for (default 30)
        "backlog": 2048,
        "max_request_header_size": 32 * 1024,  # default 256 KB
        "max_request_body_size": 1024 * 1024,  # the app refuses more than 64 KB anyway (413)
    }
    if trusted_proxy:
        options |= {
            "trusted_proxy": trusted_proxy,
            "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto",
            "clear_untrusted_proxy_headers": True,
        }
    return options


def _connection_limit(wanted: int) -> int:
    """`wanted`, after raising the open-files limit to fit it (and the store's files) if the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + 100
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return wanted if soft == resource.RLIM_INFINITY else max(10, min(wanted, soft - 100))


def serving_secret(host: str, development: bool) -> bytes:
    """The secret `serve` checks links with: NEWSLETTER_SECRET_KEY, or in development mode (loopback only)
    the public development secret. Raises ConfigError, before anything starts, for anything else."""
    if development and not is_loopback(host):
        raise ConfigError(
            "--dev",
            f"serves only on a loopback address, not {host} (its links can be forged by anyone)",
            "use --host 127.0.0.1, or set NEWSLETTER_SECRET_KEY and leave out --dev",
        )
    return server_secret_key(development)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    threads: int = 8,
    trusted_proxy: str | None = None,
    development: bool = False,
    announce: Callable[[], None] | None = None,
) -> None:
    """Run the app and its confirmation worker under waitress (a production WSGI server) until interrupted.

    Without NEWSLETTER_SECRET_KEY it refuses to start; `development` allows the public development secret,
    on a loopback address only (see serving_secret). `announce` is called once the port is bound.
    """
    secret = serving_secret(host, development)
    try:
        from .events import sns_handler
        from .guarded_server import create_server
        from .web import CONFIRMATIONS, create_app
    except ModuleNotFoundError as err:  # part of the normal install: this environment lost it
        package = (err.name or "").split(".")[0]
        if package in WEB_STACK:
            raise MissingExtraError("newsletter serve", needs=f"the {package} package, which is missing") from None
        raise
    from .store import open_store

    store = open_store(settings.database_url)
    try:
        handler = sns_handler(settings, store=store, transient_limit=settings.ses.transient_bounces)
        app = create_app(settings, store, events_handler=handler, secret=secret, development=development)
        server = listen(create_server, app, host, port, waitress_options(host, port, threads, trusted_proxy))
        if announce is not None:
            announce()
        worker = app.extensions[CONFIRMATIONS]
        worker.start()  # first sends what an earlier run left due
        try:
            server.run()
        finally:
            worker.stop()
            server.close()
    finally:
        store.close()


def listen(create_server: Callable[..., Any], app: Any, host: str, port: int, options: dict[str, Any]) -> Any:
    """The server bound to host:port; a host or port it cannot use is a one-line ConfigError naming the option."""
    try:
        return create_server(app, **options)
    except ValueError:  # waitress: getaddrinfo refused the host (the port is checked by the CLI)
        raise ConfigError(
            "--host",
            f"{host} is neither an IP address nor a name that resolves",
            "use an address such as 127.0.0.1, or 0.0.0.0 for every interface",
        ) from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                "--port", f"{port} is already in use on {host}", "stop what listens there, or choose another --port"
            ) from None
        if err.errno == errno.EACCES:
            raise ConfigError(
                "--port", f"{port} needs privileges on {host}", "choose a port above 1023 behind a reverse proxy"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                "--host",
                f"{host} is not an address of this machine",
                "use one of its addresses, 127.0.0.1, or 0.0.0.0 for every interface",
            ) from None
        raise ConfigError(
            "--host", f"cannot listen on {host} port {port}: {err.strerror or err}", "check --host and --port"
        ) from None
