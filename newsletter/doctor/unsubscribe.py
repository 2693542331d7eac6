"""The unsubscribe host, asked as a mailbox provider asks it: an RFC 8058 one-click POST on a test link, then a
GET of the same link, which must only show a page. The test link names subscriber id 0, which no store ever
gives out, so neither request can unsubscribe anybody."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .findings import Finding, failed, passed, warned

POST_CHECK = "one-click unsubscribe"
GET_CHECK = "unsubscribe page"
BODY = b"List-Unsubscribe=One-Click"  # RFC 8058 §3.2: the POST carries only this
SERVE = "run newsletter serve there, or set app_url to where it runs; see the README's Deployment notes"


def _is_newsletter_serve(response: Any) -> bool:
    """Whether an answer carries the security headers of `newsletter serve`'s pages (web.py)."""
    policy = response.headers.get("Content-Security-Policy", "")
    return "form-action 'self'" in policy and "frame-ancestors 'none'" in policy


def _shown(url: str) -> str:
    """The URL without its query (the token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def check_unsubscribe(url: str, timeout: float) -> list[Finding]:
    """POST one-click and GET `url` (a List-Unsubscribe URI holding the test token), `timeout` seconds each."""
    import urllib3

    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
    shown = _shown(url)
    try:
        post = pool.request(
            "POST",
            url,
            body=BODY,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            redirect=False,
        )
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
        return [failed(POST_CHECK, f"POST {shown}: {_reason(err, timeout)}", SERVE)]
    findings = [_post_finding(post, shown)]
    try:
        get = pool.request("GET", url, redirect=False)
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
        return [*findings, warned(GET_CHECK, f"GET {shown}: {_reason(err, timeout)}", "check the server's log")]
    findings.append(_get_finding(get, shown))
    pool.clear()
    return findings


def _reason(err: Exception, timeout: float) -> str:
    import urllib3

    # NameResolutionError is a NewConnectionError, which is a ConnectTimeoutError: most specific first
    if isinstance(err, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    if isinstance(err, urllib3.exceptions.NewConnectionError):
        text = str(err)
        return "connection refused" if "refused" in text.lower() else f"cannot connect: {text.split(': ', 1)[-1]}"
    if isinstance(err, urllib3.exceptions.ConnectTimeoutError):
        return f"no connection within {timeout:g} s"
    if isinstance(err, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, urllib3.exceptions.SSLError):
        return f"TLS failed: {err}"
    return " ".join(str(err).split()) or type(err).__name__


def _post_finding(response: Any, shown: str) -> Finding:
    status = response.status
    if 200 <= status < 300:
        return passed(POST_CHECK, f"POST {shown} answers {status} to a one-click POST on a test link (RFC 8058)")
    if 300 <= status < 400:
        where = response.headers.get("Location", "elsewhere")
        return failed(
            POST_CHECK,
            f"POST {shown} answers {status}, a redirect to {where}: mailbox providers do not follow it",
            "answer the POST at this URL with 200",
        )
    if status == 400 and _is_newsletter_serve(response):
        # serve answers a correctly signed test link with its page: a 400 means it checks with another key
        return failed(
            POST_CHECK,
            f"POST {shown} is newsletter serve, and it refuses the test link: it checks links with another "
            "NEWSLETTER_SECRET_KEY, so every unsubscribe link of this send would fail",
            "give serve the same NEWSLETTER_SECRET_KEY as send",
        )
    if status in {404, 405}:
        return failed(POST_CHECK, f"POST {shown} answers {status}: nothing takes one-click POSTs there", SERVE)
    if status >= 500:
        return failed(POST_CHECK, f"POST {shown} answers {status}: the server failed", "check its log")
    return failed(POST_CHECK, f"POST {shown} answers {status} to a one-click POST", SERVE)


def _get_finding(response: Any, shown: str) -> Finding:
    status = response.status
    if 200 <= status < 300:
        page = response.data[:200_000].lower()
        if b"<form" in page and b'method="post"' in page.replace(b"'", b'"'):
            return passed(GET_CHECK, f"GET {shown} shows a page with a POST form (a GET must change nothing)")
        return warned(
            GET_CHECK,
            f"GET {shown} answers {status} with no POST form",
            "make sure a GET never unsubscribes: link scanners follow every link",
        )
    if status == 400 and _is_newsletter_serve(response):
        return warned(
            GET_CHECK,
            f"GET {shown} is newsletter serve, and it refuses the test link (another NEWSLETTER_SECRET_KEY)",
            "give serve the same NEWSLETTER_SECRET_KEY as send",
        )
    if 300 <= status < 400:
        return warned(GET_CHECK, f"GET {shown} answers {status}, a redirect", "show the unsubscribe page at this URL")
    return warned(GET_CHECK, f"GET {shown} answers {status}", "the link in the footer should show a page")
