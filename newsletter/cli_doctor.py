"""`newsletter doctor`: options → run_doctor → one line per finding (or JSON); exit 1 when any check fails.

cli.py registers it at its end, so this module imports cli.py's helpers only when the command runs.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import click

from .config import TRANSPORTS


class Nameserver(click.ParamType):
    """ADDR[:PORT] of a DNS server: an IPv4 address, an IPv6 address ([ADDR]:PORT with a port), port 53 by default."""

    name = "ADDR[:PORT]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        address, port = text, "53"
        if text.startswith("["):
            address, _, rest = text[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif text.count(":") == 1:
            address, port = text.split(":")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            self.fail(f"{text!r} is not an IP address (use 127.0.0.1:5353 or [::1]:53)", param, ctx)
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            self.fail(f"{text!r} has no valid port (use a number from 1 to 65535)", param, ctx)
        return address, int(port)


# RFC 6376 §3.1: a selector is one or more DNS labels joined by dots
SELECTOR = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


class DkimSelector(click.ParamType):
    """A DKIM selector (the s= of a DKIM-Signature): DNS labels joined by dots, looked up in lower case."""

    name = "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        if len(text) > 200 or not SELECTOR.fullmatch(text):
            self.fail(f"{text[:80]!r} is not a DKIM selector (use the s= of a DKIM-Signature, such as s1)", param, ctx)
        return text.lower()


@click.command()
@click.option("--transport", type=click.Choice(TRANSPORTS), help="The transport the send will use [the setting].")
@click.option("--nameserver", type=Nameserver(), help="Ask this DNS server instead of this machine's.")
@click.option(
    "--dkim-selector", "dkim_selectors", type=DkimSelector(), multiple=True, help="A DKIM selector to look up."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=3.0,
    show_default=True,
    help="Seconds for each DNS lookup, HTTP request and SES call.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def doctor(
    ctx: click.Context,
    transport: str | None,
    nameserver: tuple[str, int] | None,
    dkim_selectors: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Check what Gmail, Yahoo and Outlook.com require before you send: the secret key, one-click unsubscribe
    headers and host, the message size, the SES identity and Easy DKIM, SPF, DKIM, DMARC and alignment.

    Each line is pass, warn or fail with what to do; exit code 1 when any check fails.

    Example: newsletter doctor --transport ses
    """
    from .cli import reports_errors

    reports_errors(_doctor)(ctx, transport, nameserver, dkim_selectors, timeout, as_json)


def _doctor(
    ctx: click.Context,
    transport: str | None,
    nameserver: tuple[str, int] | None,
    dkim_selectors: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    from .cli import settings_of
    from .doctor import DoctorOptions, Status, run_doctor

    settings = settings_of(ctx)
    options = DoctorOptions(
        transport=transport or settings.transport,
        nameserver=nameserver,
        timeout=timeout,
        dkim_selectors=dkim_selectors,
    )
    findings = run_doctor(settings, options)
    counts = {status: sum(1 for f in findings if f.status == status) for status in Status}
    if as_json:
        summary = {status.value: count for status, count in counts.items()}
        click.echo(json.dumps({"checks": [f.as_dict() for f in findings], "counts": summary}, ensure_ascii=False))
    else:
        for finding in findings:
            click.echo(str(finding))
    total = len(findings)
    if counts[Status.FAIL]:
        raise click.ClickException(
            f"doctor: {counts[Status.FAIL]} of {total} checks failed (fix the lines marked fail, then run it again)"
        )
    if not as_json:
        click.echo(f"doctor: {counts[Status.PASS]} passed, {counts[Status.WARN]} warned, 0 failed")
