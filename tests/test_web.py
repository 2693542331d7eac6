"""The web app through a real HTTP server (waitress on 127.0.0.1) and a real HTTP client, and in Chromium."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import requests

from newsletter.store import SubscriberStatus, add_subscriber, get_subscriber, record_unsubscribe, subscriber_by_email
from newsletter.tokens import confirm_token, unsubscribe_token
from newsletter.web import CONFIRMATIONS

from .conftest import WEB_SECRET

SECRET = WEB_SECRET  # the `web` app's; the sends below sign with it too (NEWSLETTER_SECRET_KEY)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", WEB_SECRET.decode())


def send_due_confirmations(server) -> int:
    """Run the app's confirmation worker once for confirmation mails, as `serve`'s thread does after each sign-up."""
    return server.app.extensions[CONFIRMATIONS].send_due_confirmations()


def _token(settings, subscriber_id: int) -> str:
    return unsubscribe_token(SECRET, settings.list_id, subscriber_id)


def test_get_shows_a_page_in_their_language_and_changes_nothing(web) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    answer = requests.get(f"{server.url}/unsubscribe", params={"token": _token(settings, kim.id)}, timeout=5)
    assert answer.status_code == 200 and '<html lang="ko"' in answer.text
    assert "수신거부 (Unsubscribe)" in answer.text and 'method="post"' in answer.text
    assert get_subscriber(store, kim.id).status == SubscriberStatus.ACTIVE
    assert "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_idempotently(web, encoding: str) -> None:
    server, store, settings, _ = web
    alice = add_subscriber(store, "alice@example.com", lang="en")
    url = f"{server.url}/unsubscribe?token={_token(settings, alice.id)}"
    for _ in range(2):  # providers repeat requests
        if encoding == "urlencoded":
            answer = requests.post(
                url,
                data="List-Unsubscribe=One-Click",
                timeout=5,
                allow_redirects=False,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            answer = requests.post(
                url, files={"List-Unsubscribe": (None, "One-Click")}, timeout=5, allow_redirects=False
            )
        assert answer.status_code == 200
        assert "You are unsubscribed" in answer.text and "Subscribe again" in answer.text
    stored = get_subscriber(store, alice.id)
    assert stored.status == SubscriberStatus.UNSUBSCRIBED and stored.unsubscribe_method == "one-click"
    assert stored.unsubscribed_at is not None


@pytest.mark.parametrize(
    "body",
    [None, "", "hello", "List-Unsubscribe=one-click", "List-Unsubscribe=One-Click-ish", "list-unsubscribe=One-Click"],
)
def test_a_post_without_rfc_8058s_body_changes_nothing_and_shows_the_button(web, body: str | None) -> None:
    """A scanner that posts to every link, or a hand-made POST, is not the recipient's one click."""
    server, store, settings, _ = web
    alice = add_subscriber(store, "alice@example.com", lang="en")
    url = f"{server.url}/unsubscribe?token={_token(settings, alice.id)}"
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = requests.post(url, data=body, headers=headers, timeout=5, allow_redirects=False)
        assert answer.status_code == 200 and 'method="post"' in answer.text, (body, content_type)
        assert "You are unsubscribed" not in answer.text
    assert get_subscriber(store, alice.id).status == SubscriberStatus.ACTIVE
    # The body alone, with no form type (some senders give none), is the one click.
    assert requests.post(url, data="List-Unsubscribe=One-Click", timeout=5).status_code == 200
    assert get_subscriber(store, alice.id).unsubscribe_method == "one-click"


def test_resubscribe_from_the_confirmation_page(web) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    record_unsubscribe(store, kim.id, "page")
    answer = requests.post(f"{server.url}/resubscribe?token={_token(settings, kim.id)}", timeout=5)
    assert answer.status_code == 200 and "다시 구독되었습니다" in answer.text
    assert get_subscriber(store, kim.id).status == SubscriberStatus.ACTIVE


def test_subscribing_again_after_an_older_unsubscribe_takes_a_confirmation_mail(web, publication: Path) -> None:
    """A link in a forwarded or archived mail cannot put someone back on the list: past the hour in which
    "Subscribe again" undoes a mistaken click, it sends a confirmation mail, and only its link subscribes."""
    import datetime as dt

    import sqlalchemy as sa

    from newsletter.store.database import subscribers

    server, store, settings, _ = web
    alice = add_subscriber(store, "alice@example.com", lang="en")
    record_unsubscribe(store, alice.id, "one-click")
    with store.begin() as conn:  # unsubscribed two hours ago
        two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        conn.execute(sa.update(subscribers).where(subscribers.c.id == alice.id).values(unsubscribed_at=two_hours_ago))
    answer = requests.post(f"{server.url}/resubscribe?token={_token(settings, alice.id)}", timeout=5)
    assert answer.status_code == 200 and "Check your inbox" in answer.text and "subscribed again" not in answer.text
    assert get_subscriber(store, alice.id).status == SubscriberStatus.UNSUBSCRIBED
    assert send_due_confirmations(server) == 1
    link = _confirmation_url(publication, "alice@example.com").replace(settings.app_url, server.url)
    assert requests.post(link, timeout=5).status_code == 200
    assert get_subscriber(store, alice.id).status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("case", ["tampered", "foreign", "empty", "oversized", "malformed", "unknown-id", "missing"])
def test_bad_tokens_get_400_and_change_nothing(web, case: str) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    good = _token(settings, kim.id)
    tokens = {
        "tampered": good[:-1] + ("2" if good[-1] != "2" else "3"),
        "foreign": unsubscribe_token(SECRET, "another.list.example.org", kim.id),
        "empty": "",
        "oversized": "A" * 5000,
        "malformed": "<script>alert(1)</script>",
        "unknown-id": _token(settings, 999_999),
    }
    params = {} if case == "missing" else {"token": tokens[case]}
    for method in ("GET", "POST"):
        for path in ("/unsubscribe", "/preferences", "/confirm", "/resubscribe"):
            if method == "GET" and path == "/resubscribe":
                continue
            answer = requests.request(
                method,
                server.url + path,
                params=params,
                data="List-Unsubscribe=One-Click",
                timeout=5,
                allow_redirects=False,
            )
            assert answer.status_code == 400, (method, path, answer.status_code)
            assert "<script>alert" not in answer.text
    assert get_subscriber(store, kim.id).status == SubscriberStatus.ACTIVE


def test_preferences_change_language_or_unsubscribe(web) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    url = f"{server.url}/preferences?token={_token(settings, kim.id)}"
    assert "구독 설정" in requests.get(url, timeout=5).text
    saved = requests.post(url, data={"action": "language", "lang": "en"}, timeout=5)
    assert saved.status_code == 200 and "Saved." in saved.text
    assert get_subscriber(store, kim.id).lang == "en"
    assert requests.post(url, data={"action": "language", "lang": "xx"}, timeout=5).status_code == 400
    requests.post(url, data={"action": "unsubscribe"}, timeout=5)
    assert get_subscriber(store, kim.id).unsubscribe_method == "preferences"


def _confirmation_url(publication: Path, email: str) -> str:
    from newsletter.transports.file import file_name

    message = BytesParser(policy=policy.default).parsebytes(
        (publication / "outbox" / "confirmations" / file_name(email)).read_bytes()
    )
    return re.search(r"https://\S+/confirm\?token=\S+", message.get_content()).group(0)


def test_double_opt_in(web, publication: Path) -> None:
    server, store, settings, clock = web
    form = requests.get(f"{server.url}/subscribe?lang=en", timeout=5)
    assert form.status_code == 200 and 'name="email"' in form.text
    first = requests.post(f"{server.url}/subscribe", data={"email": "new@example.com", "lang": "en"}, timeout=5)
    assert first.status_code == 200 and "Check your inbox" in first.text
    assert subscriber_by_email(store, "new@example.com").status == SubscriberStatus.PENDING
    assert not (publication / "outbox" / "confirmations").exists()  # sent after the answer, by the worker
    assert send_due_confirmations(server) == 1
    link = _confirmation_url(publication, "new@example.com")
    local = link.replace(settings.app_url, server.url)
    page = requests.get(local, timeout=5)
    assert page.status_code == 200 and "Confirm" in page.text
    assert subscriber_by_email(store, "new@example.com").status == SubscriberStatus.PENDING  # GET confirms nothing
    done = requests.post(local, timeout=5)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert subscriber_by_email(store, "new@example.com").status == SubscriberStatus.ACTIVE
    # the same answer for an address already on the list: no enumeration
    again = requests.post(f"{server.url}/subscribe", data={"email": "new@example.com", "lang": "en"}, timeout=5)
    assert again.text == first.text


def test_confirmation_links_expire_after_seven_days(web) -> None:
    server, store, settings, clock = web
    subscriber = add_subscriber(store, "late@example.com", status=SubscriberStatus.PENDING, source="web")
    token = confirm_token(SECRET, settings.list_id, subscriber.id, issued_at=clock[0])
    clock[0] += 8 * 86400
    answer = requests.post(f"{server.url}/confirm?token={token}", timeout=5)
    assert answer.status_code == 400
    assert subscriber_by_email(store, "late@example.com").status == SubscriberStatus.PENDING


def test_sign_ups_are_rate_limited_per_address_and_per_client(
    web, publication: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import newsletter.confirmations
    from newsletter.transports import open_transport

    server, store, _, _ = web
    mailed: list[str] = []

    def counting_transport(*args, **kwargs):  # the real file transport, counting what it is given
        transport = open_transport(*args, **kwargs)
        original = transport.send
        transport.send = lambda message: (mailed.append(message.recipient), original(message))[1]
        return transport

    monkeypatch.setattr(newsletter.confirmations, "open_transport", counting_transport)
    for _ in range(5):
        assert requests.post(f"{server.url}/subscribe", data={"email": "victim@example.com"}, timeout=5).ok
        send_due_confirmations(server)
    assert mailed == ["victim@example.com"] * 3  # a form cannot bomb an inbox: 3 mails a day at most
    codes = [
        requests.post(f"{server.url}/subscribe", data={"email": f"x{n}@example.com"}, timeout=5).status_code
        for n in range(10)
    ]
    assert codes.count(429) >= 4 and codes[0] == 200
    bad = requests.post(f"{server.url}/subscribe", data={"email": "not an address"}, timeout=5)
    assert bad.status_code == 400


def test_security_headers_and_no_redirects(web) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com")
    for answer in (
        requests.get(f"{server.url}/subscribe", timeout=5, allow_redirects=False),
        requests.post(f"{server.url}/unsubscribe?token={_token(settings, kim.id)}", timeout=5, allow_redirects=False),
        requests.get(f"{server.url}/subscribe?next=https://evil.example/", timeout=5, allow_redirects=False),
    ):
        assert answer.status_code == 200
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
        assert "evil.example" not in answer.text


def test_the_archive_is_served(web) -> None:
    server, *_ = web
    home = requests.get(server.url + "/", timeout=5)
    assert home.status_code == 200 and "이번 주의 주요 ML 논문" in home.text
    page = requests.get(server.url + "/en/issues/2023-09-25-top-ml-papers/", timeout=5)
    assert page.status_code == 200 and "The Reversal Curse" in page.text
    feed = requests.get(server.url + "/feed.xml", timeout=5)
    assert feed.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    missing = requests.get(server.url + "/nope/", timeout=5)
    assert missing.status_code == 404 and "페이지를 찾을 수 없습니다" in missing.text
    assert requests.get(server.url + "/../pyproject.toml", timeout=5).status_code == 404


def test_a_symbolic_link_out_of_the_site_serves_nothing(web, publication: Path, tmp_path: Path) -> None:
    """A link planted in site/ (the build makes none) that leads outside it is a missing page; one inside is served."""
    server, *_ = web
    site = publication / "site"
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the site")
    (site / "out.txt").symlink_to(secret)
    (site / "out-folder").symlink_to(tmp_path, target_is_directory=True)
    (site / "inside.xml").symlink_to(site / "feed.xml")
    for path in ("/out.txt", "/out-folder/secret.txt"):
        answer = requests.get(server.url + path, timeout=5)
        assert answer.status_code == 404 and "outside the site" not in answer.text, path
    assert requests.get(server.url + "/inside.xml", timeout=5).status_code == 200


def test_archive_paths_the_file_system_refuses_are_404s(web, publication: Path) -> None:
    """Names too long (one part, the whole path), NUL, a symlink loop, a file used as a folder, a folder
    without access, bad UTF-8: each is a page that is not there (404 with the site's page), never a 500."""
    server, *_ = web
    site = publication / "site"
    (site / "loop").symlink_to(site / "loop")
    (site / "closed").mkdir()
    (site / "closed" / "index.html").write_text("secret")
    (site / "closed").chmod(0)
    paths = [
        "/" + "a" * 256,
        "/" + "a" * 300 + "/",
        "/" + "/".join(["b" * 200] * 25),  # past PATH_MAX
        "/a%00b",
        "/en/%00/",
        "/loop",
        "/loop/",
        "/loop/index.html",
        "/robots.txt/x",
        "/robots.txt/",
        "/%ff%fe",
        "/closed/",
        "/closed/index.html",
    ]
    try:
        for path in paths:
            answer = requests.get(server.url + path, timeout=10)
            if path.startswith("/closed") and answer.status_code == 200:  # root reads it anyway
                assert answer.text == "secret"
                continue
            assert answer.status_code == 404, (path[:40], answer.status_code)
            assert "페이지를 찾을 수 없습니다" in answer.text, path[:40]
    finally:
        (site / "closed").chmod(0o700)


def test_unsubscribe_link_from_a_real_message_in_chromium(
    web, browser, run, publication: Path, artifacts: Path
) -> None:
    server, store, settings, _ = web
    assert (
        run(
            "subscribers",
            "import",
            str(Path(__file__).resolve().parent.parent / "subscribers" / "example.csv"),
        ).exit_code
        == 0
    )
    assert run("send", "2023-09-25-top-ml-papers", "--yes").exit_code == 0
    from newsletter.transports.file import file_name

    raw = (publication / "outbox" / "2023-09-25-top-ml-papers" / file_name("minji.kim@example.com")).read_bytes()
    message = BytesParser(policy=policy.default).parsebytes(raw)
    url = message["List-Unsubscribe"].strip("<>")
    assert url in message.get_body(("html",)).get_content()  # the footer link is the same URL
    page = browser.new_page(viewport={"width": 375, "height": 800})
    try:
        page.goto(url.replace(settings.app_url, server.url))
        assert "수신거부" in page.locator("h1").inner_text()
        page.screenshot(path=str(artifacts / "unsubscribe-ask-375.png"))
        page.get_by_role("button", name="수신거부 (Unsubscribe)").click()
        page.wait_for_selector("text=수신거부되었습니다")
        page.screenshot(path=str(artifacts / "unsubscribe-done-375.png"))
    finally:
        page.close()
    minji = subscriber_by_email(store, "minji.kim@example.com")
    assert minji.status == SubscriberStatus.UNSUBSCRIBED and minji.unsubscribe_method == "page"


# ---------------------------------------------------------------- only a POST changes state

METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "POST"]
# route → the methods it takes (OPTIONS is answered by Flask for every route and changes nothing)
ROUTES = {
    "/unsubscribe": {"GET", "HEAD", "POST"},
    "/resubscribe": {"POST"},
    "/preferences": {"GET", "HEAD", "POST"},
    "/subscribe": {"GET", "HEAD", "POST"},
    "/confirm": {"GET", "HEAD", "POST"},
    "/ses/notifications": {"POST"},
    "/": {"GET", "HEAD"},
    "/index.html": {"GET", "HEAD"},
    "/feed.xml": {"GET", "HEAD"},
}


def _dump(store) -> list[tuple]:
    import sqlalchemy as sa

    from newsletter.store import subscribers

    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(subscribers).order_by(subscribers.c.id))]


@pytest.mark.parametrize("method", METHODS)
def test_only_the_documented_posts_change_the_store(web, method: str) -> None:
    server, store, settings, clock = web
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    gone = add_subscriber(store, "gone@example.com", lang="en")
    record_unsubscribe(store, gone.id, "page")
    lee = add_subscriber(store, "lee@example.com", lang="ko")
    pending = add_subscriber(store, "pending@example.com", status=SubscriberStatus.PENDING, source="web")
    queries = {
        "/unsubscribe": {"token": _token(settings, kim.id)},
        "/preferences": {"token": _token(settings, lee.id)},
        "/resubscribe": {"token": _token(settings, gone.id)},
        "/confirm": {"token": confirm_token(SECRET, settings.list_id, pending.id, clock[0])},
    }
    # a body that would change something if the method were taken as a POST
    forms = {
        "/unsubscribe": {"List-Unsubscribe": "One-Click"},
        "/preferences": {"action": "unsubscribe", "lang": "en"},
        "/subscribe": {"email": "someone-new@example.com", "lang": "en"},
    }
    for path, allowed in ROUTES.items():
        before = _dump(store)
        answer = requests.request(
            method,
            server.url + path,
            params=queries.get(path, {}),
            data=forms.get(path, {}),
            timeout=5,
            allow_redirects=False,
        )
        after = _dump(store)
        where = (method, path, answer.status_code)
        if method == "OPTIONS":
            assert answer.status_code == 200, where
            assert set(answer.headers["Allow"].split(", ")) == allowed | {"OPTIONS"}, where
        elif method in allowed:
            assert answer.status_code in {200, 403}, where  # 403: the SNS endpoint without a topic
        else:
            assert answer.status_code == 405, where
            assert set(answer.headers["Allow"].split(", ")) == allowed | {"OPTIONS"}, where
        assert answer.headers["X-Content-Type-Options"] == "nosniff", where
        if method == "POST" and path in {"/unsubscribe", "/preferences", "/resubscribe", "/subscribe"}:
            assert after != before, where  # the documented POSTs do change it
        elif not (method == "POST" and path == "/confirm"):
            assert after == before, where
    if method == "POST":
        assert get_subscriber(store, pending.id).status == SubscriberStatus.ACTIVE
    else:
        assert {get_subscriber(store, p.id).status for p in (kim, lee)} == {SubscriberStatus.ACTIVE}


def test_head_of_an_unsubscribe_link_unsubscribes_nobody(web) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    answer = requests.head(f"{server.url}/unsubscribe", params={"token": _token(settings, kim.id)}, timeout=5)
    assert answer.status_code == 200 and answer.text == ""
    assert get_subscriber(store, kim.id).status == SubscriberStatus.ACTIVE


# ---------------------------------------------------------------- no development secret in public


def test_tokens_forged_with_the_public_development_secret_are_refused(web) -> None:
    from newsletter.tokens import DEVELOPMENT_SECRET

    server, store, settings, clock = web
    forged = DEVELOPMENT_SECRET.encode()
    people = [add_subscriber(store, f"p{n}@example.com") for n in range(20)]
    pending = add_subscriber(store, "pending@example.com", status=SubscriberStatus.PENDING, source="web")
    for person in people:
        token = unsubscribe_token(forged, settings.list_id, person.id)
        for path in ("/unsubscribe", "/preferences"):
            for method in ("GET", "POST"):
                answer = requests.request(
                    method, f"{server.url}{path}?token={token}", data={"action": "unsubscribe"}, timeout=5
                )
                assert answer.status_code == 400 and person.email not in answer.text, (path, method)
    confirm = confirm_token(forged, settings.list_id, pending.id, clock[0])
    assert requests.post(f"{server.url}/confirm?token={confirm}", timeout=5).status_code == 400
    assert all(get_subscriber(store, p.id).status == SubscriberStatus.ACTIVE for p in people)
    assert get_subscriber(store, pending.id).status == SubscriberStatus.PENDING


# ---------------------------------------------------------------- an old confirmation link


def test_an_old_confirmation_link_does_not_undo_a_later_unsubscribe(web, publication: Path) -> None:
    import time

    server, store, settings, clock = web
    clock[0] = time.time()  # the store records unsubscribes in real time; tokens are stamped by this clock
    assert requests.post(f"{server.url}/subscribe", data={"email": "late@example.com", "lang": "en"}, timeout=5).ok
    send_due_confirmations(server)
    old_link = _confirmation_url(publication, "late@example.com").replace(settings.app_url, server.url)
    assert requests.post(old_link, timeout=5).status_code == 200
    late = subscriber_by_email(store, "late@example.com")
    assert late.status == SubscriberStatus.ACTIVE
    one_click = {"List-Unsubscribe": "One-Click"}
    assert requests.post(f"{server.url}/unsubscribe?token={_token(settings, late.id)}", data=one_click, timeout=5).ok
    for method in ("GET", "POST"):  # the old link, after the unsubscribe
        answer = requests.request(method, old_link, timeout=5)
        assert answer.status_code == 400 and "older than your unsubscribe" in answer.text, method
    assert subscriber_by_email(store, "late@example.com").status == SubscriberStatus.UNSUBSCRIBED
    # signing up again gets a new link, which works (even within the second of the unsubscribe)
    assert requests.post(f"{server.url}/subscribe", data={"email": "late@example.com", "lang": "en"}, timeout=5).ok
    assert send_due_confirmations(server) == 1
    new_link = _confirmation_url(publication, "late@example.com").replace(settings.app_url, server.url)
    assert new_link != old_link
    assert requests.post(new_link, timeout=5).status_code == 200
    assert subscriber_by_email(store, "late@example.com").status == SubscriberStatus.ACTIVE
    assert requests.post(old_link, timeout=5).status_code == 200  # active already: the old link changes nothing


def test_a_confirmation_link_older_than_its_row_confirms_nothing(web) -> None:
    import time

    server, store, settings, clock = web
    clock[0] = time.time()
    token = confirm_token(SECRET, settings.list_id, 1, clock[0] - 3600)  # made for an id before this row existed
    row = add_subscriber(store, "reused@example.com", status=SubscriberStatus.PENDING, source="web")
    assert row.id == 1
    assert requests.post(f"{server.url}/confirm?token={token}", timeout=5).status_code == 400
    assert get_subscriber(store, row.id).status == SubscriberStatus.PENDING


class _TimedSession(requests.Session):
    """A session whose requests time out after 5 s unless told otherwise."""

    def request(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", 5)
        kwargs.setdefault("allow_redirects", False)
        return super().request(*args, **kwargs)


def test_hostile_requests_change_nothing_reflect_nothing_and_never_redirect(web) -> None:
    server, store, settings, _ = web
    kim = add_subscriber(store, "kim@example.com")
    token = _token(settings, kim.id)
    u = server.url
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    client = _TimedSession()
    cases = {
        "oversize body": (lambda: client.post(f"{u}/unsubscribe?token={token}", data=b"a" * 200_000), 413),
        "oversize chunked": (lambda: client.post(f"{u}/subscribe", data=iter([b"email=" + b"a" * 100_000])), 413),
        "lang markup": (lambda: client.get(f"{u}/subscribe?lang=<script>x</script>"), 200),
        "foreign Host": (lambda: client.get(f"{u}/subscribe", headers={"Host": "evil.example"}), 200),
        "scheme-relative path": (lambda: client.get(f"{u}//evil.example/"), 404),
        "encoded traversal": (lambda: client.get(f"{u}/..%2f..%2fpyproject.toml"), 404),
        "token in the form only": (lambda: client.post(f"{u}/unsubscribe", data={"token": token}), 400),
        "a bad token first": (lambda: client.post(f"{u}/unsubscribe?token=x&token={token}"), 400),
        "bad UTF-8 form": (lambda: client.post(f"{u}/subscribe", data=b"email=%ff%fe&lang=%ff", headers=form), 400),
        "NUL in the address": (lambda: client.post(f"{u}/subscribe", data={"email": "a\x00b@example.com"}), 400),
        "header injection": (lambda: client.post(f"{u}/subscribe", data={"email": "a@b.example\r\nBcc: x@c"}), 400),
        "JSON body": (lambda: client.post(f"{u}/subscribe", json={"email": "j@example.com"}), 400),
        "language change by GET": (lambda: client.get(f"{u}/preferences?token={token}&lang=en&action=language"), 200),
        "method override header": (
            lambda: client.get(f"{u}/unsubscribe?token={token}", headers={"X-HTTP-Method-Override": "POST"}),
            200,
        ),
        "TRACE": (lambda: client.request("TRACE", f"{u}/subscribe"), 405),
    }
    before = _dump(store)
    for name, (call, status) in cases.items():
        answer = call()
        assert answer.status_code == status, name
        assert "Location" not in answer.headers and "<script>" not in answer.text, name
        assert "evil.example" not in answer.text, name
    assert _dump(store) == before


def test_a_locked_store_answers_503_with_retry_after(
    publication: Path, run, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the SQLite write lock: every write answers 503, Retry-After and the error page
    (not a 500), logged in one line each; the same requests work once the lock is gone."""
    import sqlite3

    from newsletter.config import load_settings
    from newsletter.store import database, open_store
    from newsletter.web import create_app

    from .conftest import WebServer

    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 200)  # wait 0.2 s for the lock, not 10 s
    assert run("build").exit_code == 0
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        kim = add_subscriber(store, "kim@example.com")
        server = WebServer(create_app(settings, store, secret=SECRET))
        token = _token(settings, kim.id)
        writes = [
            ("/subscribe", {"email": "new@example.com", "lang": "en"}),
            (f"/unsubscribe?token={token}", {"List-Unsubscribe": "One-Click"}),
            (f"/preferences?token={token}", {"lang": "en"}),
        ]
        holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            for path, form in writes:
                answer = requests.post(server.url + path, data=form, timeout=15)
                assert answer.status_code == 503, (path, answer.status_code)
                assert answer.headers["Retry-After"] == "30" and answer.headers["Cache-Control"] == "no-store"
                assert "잠시 뒤에 다시 시도해 주세요" in answer.text or "try again in a minute" in answer.text
            holder.execute("ROLLBACK")
            logged = [r.getMessage() for r in caplog.records if r.name == "newsletter.web"]
            assert len(logged) == len(writes) and all("\n" not in line for line in logged), logged
            assert all("the store is unavailable" in line and "locked" in line for line in logged), logged
            for path, form in writes:
                assert requests.post(server.url + path, data=form, timeout=15).status_code == 200, path
        finally:
            holder.close()
            server.close()


# ---------------------------------------------------------------- the web app on its own host (app_url)

APP_URL = "https://app.example.net"  # where `serve` answers; the archive stays on the sample's base_url


@pytest.fixture
def separate_web(publication: Path, monkeypatch: pytest.MonkeyPatch):
    """The sample publication with NEWSLETTER_APP_URL on another host than its archive, served by waitress."""
    from newsletter.config import load_settings
    from newsletter.store import open_store
    from newsletter.web import create_app

    from .conftest import WebServer

    monkeypatch.setenv("NEWSLETTER_APP_URL", APP_URL)
    settings = load_settings(publication)
    assert (settings.base_url, settings.app_url) == ("https://papers.example.com", APP_URL)
    store = open_store(settings.database_url)
    app = create_app(settings, store, secret=SECRET)  # no site/ built: the archive is elsewhere
    server = WebServer(app)
    server.app = app
    try:
        yield server, store, settings
    finally:
        server.close()
        store.close()


def test_pages_on_their_own_host_link_back_to_the_archive_and_use_its_style_sheet(separate_web) -> None:
    server, store, settings = separate_web
    kim = add_subscriber(store, "kim@example.com", lang="en")
    token = _token(settings, kim.id)
    for path in (f"/unsubscribe?token={token}", f"/preferences?token={token}", "/subscribe", "/confirm?token=bad"):
        answer = requests.get(server.url + path, timeout=5)
        assert '<a class="brand" href="https://papers.example.com/">' in answer.text, path
        assert '<link rel="stylesheet" href="https://papers.example.com/static/style.css">' in answer.text, path
        policy = answer.headers["Content-Security-Policy"]
        assert "style-src 'self' https://papers.example.com;" in policy, path  # the archive's sheet may load
        assert "form-action 'self'" in policy and "default-src 'none'" in policy, path
        assert answer.headers["Strict-Transport-Security"].startswith("max-age="), path
    unsubscribed = requests.post(
        f"{server.url}/unsubscribe?token={token}", data="List-Unsubscribe=One-Click", timeout=5
    )
    assert unsubscribed.status_code == 200 and get_subscriber(store, kim.id).status == SubscriberStatus.UNSUBSCRIBED
    assert 'action="resubscribe?token=' in unsubscribed.text  # forms post to this app, never to the archive


def test_sign_up_on_its_own_host_records_it_and_mails_a_link_to_it(separate_web, publication: Path) -> None:
    server, store, settings = separate_web
    sent = requests.post(f"{server.url}/subscribe", data={"email": "new@example.com", "lang": "en"}, timeout=5)
    assert sent.status_code == 200 and "Check your inbox" in sent.text
    assert 'action="subscribe"' in requests.get(f"{server.url}/subscribe", timeout=5).text
    assert subscriber_by_email(store, "new@example.com").attributes["consent"] == f"web form, {APP_URL}/subscribe"
    assert send_due_confirmations(server) == 1
    link = _confirmation_url(publication, "new@example.com")
    assert link.startswith(f"{APP_URL}/confirm?token=")  # not on the static archive, which cannot answer it
    assert requests.post(link.replace(APP_URL, server.url), timeout=5).status_code == 200
    assert subscriber_by_email(store, "new@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    ("base_url", "app_url", "hsts"),
    [
        ("https://papers.example.com", "http://app.example.net", False),  # HTTPS archive, plain-HTTP app
        ("http://papers.example.com", "https://app.example.net", True),
        ("http://papers.example.com", "http://papers.example.com", False),
    ],
)
def test_hsts_follows_the_host_the_app_answers_on(
    web, monkeypatch: pytest.MonkeyPatch, base_url: str, app_url: str, hsts: bool
) -> None:
    import dataclasses

    from newsletter.web import create_app

    from .conftest import WebServer

    _, store, settings, _ = web
    moved = dataclasses.replace(settings, base_url=base_url, app_url=app_url)
    server = WebServer(create_app(moved, store, secret=SECRET))
    try:
        answer = requests.get(f"{server.url}/subscribe", timeout=5)
    finally:
        server.close()
    assert answer.status_code == 200
    assert ("Strict-Transport-Security" in answer.headers) == hsts
    root = "./" if app_url == base_url else f"{base_url}/"
    assert f'<a class="brand" href="{root}">' in answer.text


def test_on_its_own_origin_the_app_takes_the_archive_style_sheet_in_chromium(
    web, browser, tmp_path: Path, artifacts: Path
) -> None:
    """Two real origins (two waitress ports): the archive, and the app whose base_url is the archive's."""
    import dataclasses

    from newsletter.web import create_app

    from .conftest import WebServer

    archive, store, settings, _ = web  # serves the built site/, with static/style.css
    empty = tmp_path / "no-site"
    empty.mkdir()
    moved = dataclasses.replace(settings, base_url=archive.url, app_url="http://127.0.0.1:9")  # links name no port
    app = WebServer(create_app(moved, store, site_dir=empty, secret=SECRET))
    page = browser.new_page(viewport={"width": 375, "height": 800})
    refused: list[str] = []  # what Chromium blocked or could not load (its own favicon.ico request aside)
    page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else None)
    page.on("requestfailed", lambda request: refused.append(f"failed {request.url}"))
    loaded: list[str] = []
    page.on("requestfinished", lambda request: loaded.append(request.url) if request.url.endswith(".css") else None)
    page.on(
        "response",
        lambda answer: (
            refused.append(f"{answer.status} {answer.url}")
            if answer.status >= 400 and not answer.url.endswith("/favicon.ico")
            else None
        ),
    )
    try:
        assert requests.get(f"{app.url}/static/style.css", timeout=5).status_code == 404  # only the archive has it
        page.goto(f"{app.url}/subscribe?lang=en")
        brand = page.locator("a.brand")
        assert brand.get_attribute("href") == f"{archive.url}/"
        assert brand.evaluate("e => getComputedStyle(e).fontWeight") == "700"  # the archive's sheet applied
        page.screenshot(path=str(artifacts / "subscribe-own-host-375.png"))
    finally:
        page.close()
        app.close()
    assert refused == []  # no Content-Security-Policy refusal, no failed load
    assert any(url.startswith(archive.url) for url in loaded)  # the sheet came from the archive's origin


def test_the_test_link_shows_its_page_and_changes_nothing_and_only_with_the_apps_key(web) -> None:
    """Subscriber id 0 (a preview's or doctor's link) names nobody: GET and POST show the page, say it is a test,
    read and change nothing; the same link signed with another key is a bad link like any other."""
    from newsletter.tokens import TEST_SUBSCRIBER_ID

    server, store, settings, _ = web
    add_subscriber(store, "kim@example.com", lang="ko")
    before = _dump(store)
    url = f"{server.url}/unsubscribe?token={_token(settings, TEST_SUBSCRIBER_ID)}"
    shown = requests.get(url, headers={"Accept-Language": "en"}, timeout=5)
    assert shown.status_code == 200 and 'method="post"' in shown.text
    assert "This is a test link from a preview or newsletter doctor: nobody is unsubscribed." in shown.text
    done = requests.post(url, data={"List-Unsubscribe": "One-Click"}, headers={"Accept-Language": "en"}, timeout=5)
    assert done.status_code == 200 and "will not be sent to the preview&#39;s address any more" in done.text
    assert "Subscribe again" not in done.text  # nobody to resubscribe
    foreign = unsubscribe_token(b"another-key-of-the-same-length-xx", settings.list_id, TEST_SUBSCRIBER_ID)
    refused = requests.post(
        f"{server.url}/unsubscribe?token={foreign}", data={"List-Unsubscribe": "One-Click"}, timeout=5
    )
    assert refused.status_code == 400
    assert _dump(store) == before


# ---------------------------------------------------------------- the README's route tables match the app

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def web_app(publication: Path):
    """The sample publication's app, nothing served."""
    from newsletter.config import load_settings
    from newsletter.store import open_store
    from newsletter.web import create_app

    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        yield create_app(settings, store, secret=SECRET)


@pytest.fixture
def url_map(web_app):
    return web_app.url_map


def test_every_view_is_a_module_level_function_with_a_docstring(web_app) -> None:
    """The Flask tutorial's shape: views on Blueprints in their modules, not closures inside create_app, sharing
    the WebContext kept on the app."""
    from newsletter.web import EXTENSION, WebContext

    assert isinstance(web_app.extensions[EXTENSION], WebContext)
    assert set(web_app.blueprints) == {"newsletter", "archive"}
    for endpoint, view in web_app.view_functions.items():
        assert view.__module__.startswith("newsletter.web."), endpoint
        assert "<locals>" not in view.__qualname__ and (view.__doc__ or "").strip(), endpoint


def _app_routes(url_map) -> dict[str, set[str]]:
    """path → the methods the app takes there (Flask's own HEAD and OPTIONS aside); `/<path>` for `/<archive:path>`."""
    routes: dict[str, set[str]] = {}
    for rule in url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        routes.setdefault(path, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return routes


def _table(header: str) -> list[list[str]]:
    """The cells of each row of README.md's table whose header line is `header`."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines.count(header) == 1, header
    rows = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_readme_route_tables_list_every_route_with_its_methods(url_map) -> None:
    """`serve`'s table (`GET/POST /path`) and the Security table (a 405 column where a method is refused) name
    exactly the app's routes and methods: a new route, or resubscribe, cannot go undocumented."""
    routes = _app_routes(url_map)
    served: dict[str, set[str]] = {}
    for cells in _table("| route | what it does |"):
        for methods, path in re.findall(r"`([A-Z]+(?:/[A-Z]+)*) (/[^`?]*)", cells[0]):
            served.setdefault(path, set()).update(methods.split("/"))
    assert served == routes
    secured: dict[str, set[str]] = {}
    for route, get, post, others in _table("| route | GET, HEAD | POST | others |"):
        assert others == "405" and not get.startswith("changes"), route  # only a POST changes anything
        for path in re.findall(r"`(/[^`?]*)", route):
            secured[path] = {method for method, cell in (("GET", get), ("POST", post)) if cell != "405"}
    assert secured == routes


def test_the_all_methods_test_covers_every_route(url_map) -> None:
    """ROUTES (test_only_the_documented_posts_change_the_store) reaches every rule of the app with its methods."""
    adapter = url_map.bind("127.0.0.1")
    covered = set()
    for path, allowed in ROUTES.items():
        rule, _ = adapter.match(path, method=sorted(allowed)[0], return_rule=True)
        assert rule.methods - {"OPTIONS"} == allowed, path
        covered.add(rule.rule)
    assert covered == {rule.rule for rule in url_map.iter_rules()}
