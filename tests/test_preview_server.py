"""`newsletter preview --serve` as an editor uses it: started as a real process on a free port, read over HTTP
(and once in headless Chromium), while the test edits the issue files and templates under it."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port, wait_until, write_issue

SLUG = "2023-09-25-top-ml-papers"
KO_TITLE = "이번 주의 주요 ML 논문 (2023/09/25 ~ 10/01)"
DRAFT = """---
title: "초안 호"
date: 2023-10-02
draft: true
---

초안입니다.
"""
FUTURE = """---
title: "다음 호"
date: 2099-01-05
---

곧 나옵니다.
"""


class Preview:
    """The preview server as a child process, with what it printed."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.port = free_port()
        self.out: list[str] = []
        self.err: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--root", str(root), "preview", "--serve", "--port", str(self.port)]
            + list(args),
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_collect, args=(stream, lines), daemon=True).start()
        wait_until(lambda: self.announced() or self.process.poll() is not None, 60, "the preview to print its address")
        assert self.announced(), f"exit {self.process.poll()}: {self.out} {self.err}"

    def announced(self) -> bool:
        return any(line.startswith("Previewing at") for line in self.out)

    def request(self, path: str, method: str = "GET") -> tuple[int, http.client.HTTPMessage, bytes]:
        """(status, headers, body) of `path` sent as it is (no client normalises it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> str:
        status, headers, body = self.request(path)
        assert status == 200, (path, status, body[:300])
        return body.decode("utf-8")

    def version(self, path: str) -> int:
        """The change the page at `path` was made after (what its reload stream starts from)."""
        found = re.search(r'EventSource\("/events\?since=(\d+)"\)', self.get(path))
        assert found, path
        return int(found[1])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=20)


def _collect(stream: Any, lines: list[str]) -> None:
    for line in stream:
        lines.append(line.rstrip("\n"))


class Events:
    """The reload stream of the preview at `port` from change `since`, read in a thread."""

    def __init__(self, port: int, since: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", f"/events?since={since}")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        self.changes: list[dict[str, Any]] = []
        self.opened = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(self.opened.is_set, 10, "the reload stream's first line")

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.response.read1(65536):
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self.opened.set()
                    fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if ": " in line)
                    if fields.get("event") == "change":
                        self.changes.append(json.loads(fields["data"]) | {"id": fields["id"]})
        except (OSError, ValueError, http.client.HTTPException):
            return

    def next_change(self, seconds: float = 15.0) -> dict[str, Any]:
        wait_until(lambda: bool(self.changes), seconds, "a reload event")
        return self.changes.pop(0)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def preview(publication: Path) -> Iterator[Preview]:
    server = Preview(publication)
    yield server
    assert (server.stop(), server.err) == (0, [])  # Ctrl-C stops it quietly, and nothing went wrong meanwhile


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _sources(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in (root / "issues", root / "templates")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    } | {"pyproject.toml": (root / "pyproject.toml").read_bytes()}


def test_the_index_lists_every_issue_and_edition_with_drafts_and_issues_not_yet_due_marked(publication: Path) -> None:
    write_issue(publication, "2023-10-02-draft.md", DRAFT)
    write_issue(publication, "2099-01-05-next.md", FUTURE)
    before = _sources(publication)
    server = Preview(publication)
    try:
        assert server.out == [f"Previewing at http://127.0.0.1:{server.port}/ (Ctrl-C to stop)"]
        index = server.get("/")
        items = re.findall(r"<li><strong>([^<]+)</strong>", index)
        assert items == ["2099-01-05-next", "2023-10-02-draft", SLUG]  # newest first
        assert f'href="/issues/{SLUG}/ko/">ko</a> {KO_TITLE}' in index
        assert f'href="/issues/{SLUG}/en/">en</a> Top ML Papers' in index
        draft = index.split("2023-10-02-draft", 1)[1].split("</ul>", 1)[0]
        assert '<span class="mark draft">draft</span>' in draft
        future = index.split("2099-01-05-next", 1)[1].split("</ul>", 1)[0]
        assert '<span class="mark">not yet due: 2099-01-05 09:00 KST</span>' in future
        assert "mark" not in index.split(SLUG, 1)[1].split("</ul>", 1)[0]  # the sample is out: no mark
        for slug in ("2023-10-02-draft", "2099-01-05-next"):  # drafts and future issues are previewed too
            assert "<iframe" in server.get(f"/issues/{slug}/ko/")
            assert server.request(f"/issues/{slug}/ko/email.txt")[0] == 200
    finally:
        assert server.stop() == 0, server.err
    assert _sources(publication) == before  # it only reads


def test_each_edition_shows_its_email_at_375_and_600_px_and_its_text_part_in_utf_8(preview: Preview) -> None:
    page = preview.get(f"/issues/{SLUG}/ko/")
    frames = re.findall(r'<iframe src="([^"]+)" width="(\d+)"', page)
    assert frames == [("email.html", "375"), ("email.html", "600")]
    assert f'href="/issues/{SLUG}/en/">en</a>' in page  # the other edition
    status, headers, body = preview.request(f"/issues/{SLUG}/ko/email.html")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert KO_TITLE in body.decode("utf-8")
    status, headers, body = preview.request(f"/issues/{SLUG}/ko/email.txt")
    assert (status, headers["Content-Type"]) == (200, "text/plain; charset=utf-8")
    text = body.decode("utf-8")
    assert KO_TITLE in text and "🙇‍♂️" in text
    assert '<iframe class="wide" src="email.txt"' in preview.get(f"/issues/{SLUG}/ko/text")


def test_the_dark_toggle_turns_the_emails_dark_mode_rules_on(preview: Preview) -> None:
    page = preview.get(f"/issues/{SLUG}/ko/?scheme=dark")
    assert re.findall(r'<iframe src="([^"]+)"', page) == ["email.html?scheme=dark"] * 2
    light, dark = preview.get(f"/issues/{SLUG}/ko/email.html"), preview.get(f"/issues/{SLUG}/ko/email.html?scheme=dark")
    assert "prefers-color-scheme: dark" in light and "prefers-color-scheme" not in dark
    assert "@media (min-width: 0px)" in dark


def test_the_archive_page_is_the_one_the_build_makes(preview: Preview, publication: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(publication), "build", "--out", str(site)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    for page_path in (f"issues/{SLUG}/", f"en/issues/{SLUG}/"):
        status, headers, body = preview.request(f"/site/{page_path}")
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert body == (site / page_path / "index.html").read_bytes()
        assert preview.request(f"/site/{page_path}index.html")[2] == body
    assert preview.request("/site/static/style.css")[2] == (site / "static" / "style.css").read_bytes()
    page = preview.get(f"/issues/{SLUG}/en/archive")
    assert f'<iframe class="wide" src="/site/en/issues/{SLUG}/"' in page


def test_an_edit_of_the_issue_reloads_its_pages_with_the_new_content(preview: Preview, publication: Path) -> None:
    assert KO_TITLE in preview.get(f"/issues/{SLUG}/ko/email.txt")
    events = Events(preview.port, preview.version(f"/issues/{SLUG}/ko/"))
    try:
        _edit(publication / "issues" / f"{SLUG}.md", KO_TITLE, "새 제목")
        change = events.next_change()
        assert change["slugs"] == [SLUG]  # only this issue's pages: the others keep theirs
        assert "새 제목" in preview.get(f"/issues/{SLUG}/ko/email.txt")
        assert "새 제목" in preview.get(f"/issues/{SLUG}/ko/email.html")
        assert "새 제목" in preview.get(f"/site/issues/{SLUG}/")
        assert preview.version(f"/issues/{SLUG}/ko/") == change["version"]
    finally:
        events.close()


def test_a_template_change_reloads_every_page(preview: Preview, publication: Path) -> None:
    events = Events(preview.port, preview.version("/"))
    try:
        theme = (REPO / "newsletter" / "theme" / "email.txt.j2").read_text(encoding="utf-8")
        (publication / "templates" / "email.txt.j2").write_text("Preview mark\n" + theme, encoding="utf-8")
        assert events.next_change()["slugs"] is None
        assert preview.get(f"/issues/{SLUG}/en/email.txt").startswith("Preview mark\n")
    finally:
        events.close()


def test_a_broken_edit_shows_its_error_line_and_the_fix_brings_the_page_back(
    preview: Preview, publication: Path
) -> None:
    path = publication / "issues" / f"{SLUG}.en.md"
    events = Events(preview.port, preview.version(f"/issues/{SLUG}/en/"))
    try:
        _edit(path, "date: 2023-09-25", "date: 2023-09-99")
        events.next_change()
        page = preview.get(f"/issues/{SLUG}/en/")
        errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', page)
        assert len(errors) == 1 and errors[0].startswith(f"Error: issues/{SLUG}.en.md:3: "), errors
        assert "<iframe" not in page and "EventSource" in page  # it still reloads when fixed
        status, _, body = preview.request(f"/issues/{SLUG}/en/email.txt")
        assert status == 500 and body.decode().startswith(f"Error: issues/{SLUG}.en.md:3: ")
        assert "mark error" in preview.get("/")  # the server keeps running, and the index says which failed
        assert "<iframe" in preview.get(f"/issues/{SLUG}/ko/")  # the other edition's file parses

        template = publication / "templates" / "email.txt.j2"
        _edit(path, "date: 2023-09-99", "date: 2023-09-25")
        template.write_text("{{ broken(\n", encoding="utf-8")  # a template that does not compile
        events.next_change()
        errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', preview.get(f"/issues/{SLUG}/en/text"))
        assert len(errors) == 1 and errors[0].startswith("Error: templates/email.txt.j2:"), errors

        template.unlink()
        events.next_change()
        assert '<iframe src="email.html" width="375"' in preview.get(f"/issues/{SLUG}/en/")
        assert "Top ML Papers" in preview.get(f"/issues/{SLUG}/en/email.txt")
    finally:
        events.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_it_only_reads(preview: Preview, method: str) -> None:
    status, headers, _ = preview.request(f"/issues/{SLUG}/ko/", method)
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, headers, body = preview.request(f"/issues/{SLUG}/ko/email.txt", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


@pytest.mark.parametrize(
    "path",
    [
        "/site/../pyproject.toml",
        "/site/static/../../pyproject.toml",
        "/site/%2e%2e/pyproject.toml",
        "/site/static/%2E%2E/%2E%2E/pyproject.toml",
        "/site/static/..%2f..%2fpyproject.toml",
        "/site/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/site/static/..%5c..%5cpyproject.toml",
        "/site/static/%252e%252e/%252e%252e/pyproject.toml",
        f"/issues/{SLUG}/ko/../../../pyproject.toml",
        f"/issues/{SLUG}/..%2f..%2f..%2fpyproject.toml/ko/email.txt",
        "/site/static/%00",
        "/site/static/%ff",
        "/../../../../etc/passwd",
        "/site/issues/../../issues/" + SLUG + ".md",
    ],
)
def test_no_path_leaves_what_the_preview_shows(preview: Preview, path: str) -> None:
    status, _, body = preview.request(path)
    assert status == 404, body[:200]
    assert b"[tool.newsletter]" not in body and b"root:" not in body


def test_a_port_in_use_is_one_line(publication: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "--root", str(publication), "preview", "--serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: --port: {port} is already in use on 127.0.0.1 (stop what listens there, or choose another --port)\n"
    )


def test_in_chromium_the_frames_are_375_and_600_px_wide_and_an_edit_reloads_the_page(
    browser, preview: Preview, publication: Path, artifacts: Path
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{preview.port}/issues/{SLUG}/ko/")
        loaded = """() => Array.from(document.querySelectorAll("iframe")).every((f) =>
            f.contentDocument && f.contentDocument.readyState === "complete" && f.contentDocument.body
            && f.contentDocument.body.innerText.includes(%s))"""
        page.wait_for_function(loaded % json.dumps(KO_TITLE), timeout=20_000)
        widths = page.evaluate(
            """() => Array.from(document.querySelectorAll("iframe")).map((f) =>
                [f.contentWindow.innerWidth, f.contentDocument.documentElement.clientWidth])"""
        )
        assert widths == [[375, 375], [600, 600]]  # no scroll bar inside takes from the width
        page.screenshot(path=str(artifacts / "preview-server.png"), full_page=False)
        page.evaluate("() => { window.keptUntilReload = true; }")
        _edit(publication / "issues" / f"{SLUG}.md", KO_TITLE, "크로미움에서 고친 제목")
        page.wait_for_function("() => window.keptUntilReload === undefined", timeout=20_000)
        page.wait_for_function(loaded % json.dumps("크로미움에서 고친 제목"), timeout=20_000)
        assert "크로미움에서 고친 제목" in page.locator("h1").inner_text()
    finally:
        page.close()


def test_a_settings_change_reloads_every_page_and_a_broken_one_is_its_error_line(
    preview: Preview, publication: Path
) -> None:
    events = Events(preview.port, preview.version("/"))
    try:
        _edit(publication / "pyproject.toml", 'title = "이번 주의 주요 ML 논문"', 'title = "고친 이름"')
        assert events.next_change()["slugs"] is None
        assert "<h1>고친 이름</h1>" in preview.get("/")
        assert "고친 이름" in preview.get(f"/issues/{SLUG}/ko/email.txt")

        _edit(publication / "pyproject.toml", "feed_size = 20", "feed_size = 0")
        events.next_change()
        index = preview.get("/")
        errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', index)
        assert errors == [
            "Error: pyproject.toml [tool.newsletter] feed_size: 0 is not a positive whole number (use 20)"
        ]
        status, _, body = preview.request(f"/issues/{SLUG}/ko/")
        assert status == 404 and errors[0].encode() in body  # nothing can be shown, and the page says why
        _edit(publication / "pyproject.toml", "feed_size = 0", "feed_size = 20")
        events.next_change()
        assert "<iframe" in preview.get(f"/issues/{SLUG}/ko/")
    finally:
        events.close()


def test_with_an_issue_it_writes_its_preview_first_and_without_serve_it_needs_one(publication: Path, run) -> None:
    server = Preview(publication, SLUG)
    try:
        assert server.out[0] == f"Wrote preview/{SLUG}/ko/email.html"
        assert server.out[-1] == f"Previewing at http://127.0.0.1:{server.port}/ (Ctrl-C to stop)"
        assert (publication / "preview" / SLUG / "en" / "email.txt").is_file()
    finally:
        assert server.stop() == 0, server.err
    missing = run("preview")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: newsletter preview: Missing argument 'ISSUE' (it may be left out with --serve)\n"
