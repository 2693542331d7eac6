"""Subscribe from anywhere: every archive page has a sign-up form that posts to the web app's /subscribe, also
when the archive is served from another host than the app; the answer links back to the archive.

The archive is served by a static file server and the web app by waitress, on two ports of 127.0.0.1 (two
origins), and Chromium fills the form on a built page as a reader would.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import load_settings
from newsletter.store import SubscriberStatus, open_store, subscriber_by_email
from newsletter.transports.file import file_name
from newsletter.web import CONFIRMATIONS, create_app
from tests.conftest import WEB_SECRET, ThreadedHttpServer, WebServer, wait_until
from tests.test_settings import _set


class QuietFiles(SimpleHTTPRequestHandler):
    """A static file server that logs nothing (pytest shows stderr of failing tests only, but still)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class Forms(HTMLParser):
    """The sign-up forms of a page: each form's attributes, its fields and the language options."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.html_lang = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.html_lang = found.get("lang") or ""
        elif tag == "form":
            self.forms.append({**found, "fields": [], "options": [], "selected": None})
        elif self.forms and tag in {"input", "select"}:
            self.forms[-1]["fields"].append((tag, found.get("name"), found.get("type")))
            if found.get("type") == "hidden" and found.get("name") == "lang":
                self.forms[-1]["selected"] = found.get("value")
        elif self.forms and tag == "option":
            self.forms[-1]["options"].append(found.get("value"))
            if "selected" in found:
                self.forms[-1]["selected"] = found.get("value")


@pytest.fixture
def apart(publication: Path, run) -> Iterator[dict[str, Any]]:
    """The archive on one origin (a static file server) and the web app on another (waitress), the archive
    built with base_url and app_url set to them; the app's confirmation worker runs as under `serve`."""
    site = publication / "site"
    site.mkdir()
    files = ThreadedHttpServer(functools.partial(QuietFiles, directory=str(site)))
    archive_url = files.url
    app: dict[str, Any] = {}

    def later(environ: dict[str, Any], start_response: Any) -> Any:  # the app, once its URL is known
        if "app" not in app:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"starting"]
        return app["app"](environ, start_response)

    server = WebServer(later)
    store = None
    try:
        _set(publication, "tool.newsletter", "base_url", f'"{archive_url}"')
        _set(publication, "tool.newsletter", "app_url", f'"{server.url}"')
        assert run("build").exit_code == 0
        settings = load_settings(publication)
        store = open_store(settings.database_url)
        app["app"] = create_app(settings, store, secret=WEB_SECRET)
        worker = app["app"].extensions[CONFIRMATIONS]
        worker.start()
        try:
            yield {"archive": archive_url, "app": server.url, "store": store, "site": site, "outbox": publication}
        finally:
            worker.stop()
    finally:
        server.close()
        files.close()
        if store is not None:
            store.close()


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_every_archive_page_has_a_form_posting_to_the_apps_subscribe(apart: dict[str, Any]) -> None:
    pages = _pages(apart["site"])
    kinds = {
        "index.html",
        "en/index.html",
        "issues/2023-09-25-top-ml-papers/index.html",
        "en/issues/2023-09-25-top-ml-papers/index.html",
        "tags/index.html",
        "tags/llm/index.html",
        "en/tags/llm/index.html",
        "404.html",
    }
    assert kinds <= {page.relative_to(apart["site"]).as_posix() for page in pages}
    for page in pages:
        parser = Forms()
        parser.feed(page.read_text(encoding="utf-8"))
        (form,) = parser.forms
        assert form["method"] == "post" and form["action"] == f"{apart['app']}/subscribe", page
        assert ("input", "email", "email") in form["fields"] and ("select", "lang", None) in form["fields"], page
        assert form["options"] == ["ko", "en"], page  # the configured languages, the default first
        assert form["selected"] == parser.html_lang, page  # the page's language is the one chosen


def _confirmation(outbox: Path, email: str) -> str:
    raw = (outbox / "outbox" / "confirmations" / file_name(email)).read_bytes()
    return BytesParser(policy=policy.default).parsebytes(raw).get_content()


@pytest.mark.parametrize(
    ("path", "choose", "email"),
    [
        ("en/issues/2023-09-25-top-ml-papers/", None, "reader@example.com"),  # the page's language, as it is
        ("tags/llm/", "en", "tagged.reader@example.com"),  # a Korean tag page, English chosen
    ],
)
def test_a_reader_subscribes_from_an_archive_page_on_another_host(
    browser, apart: dict[str, Any], artifacts: Path, path: str, choose: str | None, email: str
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 900})
    try:
        page.goto(f"{apart['archive']}/{path}")
        form = page.locator("form[action$='/subscribe']")
        form.locator("input[name=email]").fill(email)
        if choose:
            form.locator("select[name=lang]").select_option(choose)
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert page.url == f"{apart['app']}/subscribe"
        assert page.locator("h1").inner_text() == "Check your inbox"
        page.screenshot(path=str(artifacts / f"subscribe-answer-{path.split('/')[0]}.png"))
        subscriber = subscriber_by_email(apart["store"], email)
        assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING and subscriber.lang == "en"
        mail = apart["outbox"] / "outbox" / "confirmations" / file_name(email)
        wait_until(mail.exists, what="the confirmation mail")  # the worker sends it after the answer
        assert re.search(re.escape(apart["app"]) + r"/confirm\?token=\S+", _confirmation(apart["outbox"], email))
        with page.expect_navigation():
            page.get_by_role("link", name="Back to the archive").click()
        assert page.url == f"{apart['archive']}/"
        assert page.locator("form[action$='/subscribe']").count() == 1
    finally:
        page.close()


def test_the_answer_in_korean_links_back_too(browser, apart: dict[str, Any]) -> None:
    page = browser.new_page(viewport={"width": 600, "height": 900})
    try:
        page.goto(f"{apart['archive']}/issues/2023-09-25-top-ml-papers/")
        page.locator("form[action$='/subscribe'] input[name=email]").fill("minji@example.com")
        with page.expect_navigation():
            page.locator("form[action$='/subscribe'] button[type=submit]").click()
        assert page.locator("h1").inner_text() == "메일함을 확인해 주세요"
        assert (
            page.get_by_role("link", name="지난 호 목록으로 돌아가기").get_attribute("href") == f"{apart['archive']}/"
        )
        assert subscriber_by_email(apart["store"], "minji@example.com").lang == "ko"
    finally:
        page.close()


def test_with_one_language_the_form_sends_it_without_asking(publication: Path, run) -> None:
    config = publication / "pyproject.toml"
    text = config.read_text(encoding="utf-8").split("[tool.newsletter.en]")[0].replace('languages = ["en"]\n', "")
    config.write_text(text, encoding="utf-8")
    (publication / "issues" / "2023-09-25-top-ml-papers.en.md").unlink()
    _set(publication, "tool.newsletter", "app_url", '"https://app.example.org"')
    assert run("build").exit_code == 0
    for page in _pages(publication / "site"):
        parser = Forms()
        parser.feed(page.read_text(encoding="utf-8"))
        (form,) = parser.forms
        assert form["action"] == "https://app.example.org/subscribe", page
        assert ("input", "lang", "hidden") in form["fields"] and form["options"] == [], page
        assert form["selected"] == "ko", page
