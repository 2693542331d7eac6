"""Issues whose publication instant is still to come stay off the archive (pages, listings, feeds, sitemap) until
it comes, with the build cache on; build --future includes them; feeds and pages are dated by that instant."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import os
import re
import shutil
import subprocess
from pathlib import Path

import feedparser
import pytest

from newsletter.config import load_settings
from newsletter.render.site import BuildResult, build_site
from tests.conftest import ThreadedHttpServer, missing_system_package, write_issue
from tests.render.site_files import site_files
from tests.test_deploy_files import BASH, render, step, workflow

SLUG = "2023-10-02-next"
ISSUE = """---
title: "{title}"
date: 2023-10-02
summary: "Next week."
{extra}---

Intro.

## A paper

Text.

#llm

- [Paper](https://arxiv.org/abs/2310.00001)
"""
INSTANT = dt.datetime(2023, 10, 2, 0, 0, tzinfo=dt.UTC)  # 2023-10-02 at publish_time 09:00 in Asia/Seoul
FEEDS = ("feed.xml", "rss.xml", "en/feed.xml", "en/rss.xml", "tags/llm/feed.xml", "en/tags/llm/feed.xml")


def add_next_issue(publication: Path, extra: str = "", extra_en: str = "") -> None:
    write_issue(publication, f"{SLUG}.md", ISSUE.format(title="다음 호", extra=extra))
    write_issue(publication, f"{SLUG}.en.md", ISSUE.format(title="Next issue", extra=extra_en))


def files(site: Path) -> dict[str, bytes]:
    return site_files(site)


def feed_ids(site: Path, name: str) -> list[str]:
    return [entry.id for entry in feedparser.parse((site / name).read_bytes()).entries]


def assert_absent(site: Path) -> None:
    every = files(site)
    assert not [name for name in every if SLUG in name]
    assert not [name for name, data in every.items() if SLUG.encode() in data]  # no index, tag page, sitemap link
    for name in FEEDS:
        ids = feed_ids(site, name)
        assert ids and not [i for i in ids if SLUG in i], name


def assert_present(site: Path) -> None:
    assert (site / "issues" / SLUG / "index.html").is_file() and (site / "en/issues" / SLUG / "index.html").is_file()
    for name in FEEDS:
        assert SLUG in feed_ids(site, name)[0], name  # the newest entry
    sitemap = (site / "sitemap.xml").read_text(encoding="utf-8")
    assert f"https://papers.example.com/issues/{SLUG}/" in sitemap
    assert f"https://papers.example.com/en/issues/{SLUG}/" in sitemap
    for page in ("index.html", "en/index.html", "tags/llm/index.html", "en/tags/llm/index.html"):
        assert f"{SLUG}/" in (site / page).read_text(encoding="utf-8"), page


def test_an_issue_appears_everywhere_when_its_time_comes_and_not_before_with_the_cache_on(publication: Path) -> None:
    add_next_issue(publication)
    settings = load_settings(publication)
    site = publication / "site"

    before: BuildResult = build_site(settings, now=INSTANT - dt.timedelta(minutes=1))
    assert_absent(site)
    assert before.issues == 1 and before.not_yet_due == ((SLUG, INSTANT),)
    assert build_site(settings, now=INSTANT - dt.timedelta(seconds=1)).pages_rendered == 0  # nothing came due

    at_time = build_site(settings, now=INSTANT)  # nothing changed on disk: only the clock moved
    assert at_time.issues == 2 and at_time.not_yet_due == () and at_time.pages_rendered > 0
    assert_present(site)
    cold = publication / "cold"
    build_site(settings, out=cold, now=INSTANT, use_cache=False)
    assert files(site) == files(cold)  # the cached build is the site a cold build makes
    assert build_site(settings, now=INSTANT + dt.timedelta(hours=1)).pages_rendered == 0


def test_build_leaves_future_issues_out_and_says_so_and_future_includes_them(publication: Path, run) -> None:
    write_issue(
        publication, "2099-01-05-later.md", ISSUE.replace("2023-10-02", "2099-01-05").format(title="L", extra="")
    )
    result = run("build")
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[-1]
    assert re.fullmatch(
        r"Left out 1 issue\(s\) not yet due \(next: 2099-01-05-later at 2099-01-05 09:00 KST, in \d+ d \d+ h; "
        r"build --future includes them\)",
        line,
    ), line
    site = publication / "site"
    assert (
        not (site / "issues/2099-01-05-later").exists()
        and b"2099-01-05-later" not in (site / "sitemap.xml").read_bytes()
    )

    result = run("build", "--future")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("Included 1 issue(s) not yet due (next: 2099-01-05-later at ")
    assert (site / "issues/2099-01-05-later/index.html").is_file()
    assert "2099-01-05-later" in feed_ids(site, "feed.xml")[0]
    assert b"2099-01-05-later" in (site / "sitemap.xml").read_bytes()

    assert run("build").exit_code == 0  # and the next plain build takes it off again
    assert not (site / "issues/2099-01-05-later").exists() and "2099-01-05-later" not in feed_ids(site, "feed.xml")[0]


def test_a_translation_without_publish_at_waits_for_its_issue_in_a_cold_build(publication: Path) -> None:
    # the English edition's own date has come; the issue's publish_at (given by the default edition) has not
    add_next_issue(publication, extra="publish_at: 2023-10-05T09:00\n")
    settings = load_settings(publication)
    build_site(settings, now=INSTANT + dt.timedelta(days=1), use_cache=False)
    assert_absent(publication / "site")


def test_feeds_and_pages_are_dated_by_publish_at(publication: Path) -> None:
    add_next_issue(publication, extra="publish_at: 2023-10-03T18:30\n")  # the translation follows the issue
    settings = load_settings(publication)
    site = publication / "site"
    build_site(settings, now=dt.datetime(2023, 10, 3, 9, 30, tzinfo=dt.UTC))
    for name in FEEDS:
        feed = feedparser.parse((site / name).read_bytes())
        (entry,) = [e for e in feed.entries if SLUG in e.id]
        assert entry.published_parsed[:5] == (2023, 10, 3, 9, 30), name
        if feed.version.startswith("atom"):  # RSS has no updated of its entries
            assert entry.updated_parsed[:5] == (2023, 10, 3, 9, 30), name
        assert feed.feed.updated_parsed[:5] == (2023, 10, 3, 9, 30), name  # <updated>, <lastBuildDate>
    for page in (f"issues/{SLUG}/index.html", f"en/issues/{SLUG}/index.html"):
        html = (site / page).read_text(encoding="utf-8")
        assert '<meta property="article:published_time" content="2023-10-03T18:30:00+09:00">' in html, page


def test_publish_at_moved_in_the_default_edition_redates_the_translation_feed_with_the_cache_on(
    publication: Path,
) -> None:
    add_next_issue(publication, extra="publish_at: 2023-10-03T18:30\n")
    settings = load_settings(publication)
    now = dt.datetime(2023, 10, 9, tzinfo=dt.UTC)
    build_site(settings, now=now)
    add_next_issue(publication, extra="publish_at: 2023-10-04T07:15\n")  # the English file is unchanged
    build_site(settings, now=now)
    (entry,) = [e for e in feedparser.parse((publication / "site/en/feed.xml").read_bytes()).entries if SLUG in e.id]
    assert entry.published_parsed[:5] == (2023, 10, 3, 22, 15)
    html = (publication / "site/en/issues" / SLUG / "index.html").read_text(encoding="utf-8")
    assert 'content="2023-10-04T07:15:00+09:00"' in html


def test_editions_disagreeing_on_publish_at_stop_the_build(publication: Path, run) -> None:
    add_next_issue(publication, extra="publish_at: 2023-10-03T18:30\n", extra_en="publish_at: 2023-10-03T19:30\n")
    result = run("build")
    assert result.exit_code == 1
    assert "publish_at 2023-10-03T19:30:00+09:00 differs from" in result.output
    assert not (publication / "site").exists()


@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        ("2099-01-05-later", "", r"Time: 2099-01-05 09:00 KST \(date at publish_time\), scheduled, in \d+ d \d+ h: "),
        (
            "2099-01-05-later",
            "publish_at: 2099-01-04T20:15+00:00\n",
            r"Time: 2099-01-05 05:15 KST \(publish_at\), scheduled, in ",
        ),
        ("2023-10-02-next", "", r"Time: 2023-10-02 09:00 KST \(date at publish_time\), past max_late \(24 h\) by "),
    ],
)
def test_status_shows_the_publication_time_and_where_the_issue_stands(
    publication: Path, run, name: str, extra: str, expected: str
) -> None:
    date = name[:10]
    write_issue(publication, f"{name}.md", ISSUE.replace("2023-10-02", date).format(title="T", extra=extra))
    result = run("status", name)
    assert result.exit_code == 0, result.output
    assert re.match(expected, result.output.splitlines()[0]), result.output


def test_the_pages_workflow_also_builds_on_a_schedule_so_an_issue_appears_when_its_time_comes(tmp_path: Path) -> None:
    document = workflow(render(tmp_path), "newsletter-pages.yml")
    triggers = document["on"]
    assert triggers["push"] == {"branches": ["main"]} and "workflow_dispatch" in triggers
    assert [entry["cron"] for entry in triggers["schedule"]] == ["5 * * * *"]
    runs = " ".join(step.get("run", "") for step in document["jobs"]["build"]["steps"])
    assert "newsletter build --out site" in runs and "--future" not in runs
    assert document["jobs"]["deploy"]["if"] == "needs.build.outputs.changed != 'false'"


@pytest.mark.parametrize(
    ("published", "changed"),
    [("same", "false"), ("older", "true"), ("missing", "true")],
)
def test_a_scheduled_run_deploys_only_when_the_sitemap_differs_from_the_published_one(
    tmp_path: Path, publication: Path, run, published: str, changed: str
) -> None:
    """The compare step's script, run in bash against the built site and a real HTTP server for the published one."""
    if shutil.which("curl") is None:
        missing_system_package("curl is not installed (apt-get install curl): the pages workflow fetches with it")
    add_next_issue(publication)
    assert run("build").exit_code == 0
    site = publication / "site"
    served = tmp_path / "served"
    served.mkdir()
    if published == "same":
        shutil.copy(site / "sitemap.xml", served / "sitemap.xml")
    elif published == "older":
        (served / "sitemap.xml").write_bytes((site / "sitemap.xml").read_bytes().replace(SLUG.encode(), b"x"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    with ThreadedHttpServer(handler) as server:
        robots = (site / "robots.txt").read_text(encoding="utf-8")
        local = f"{server.url}/sitemap.xml"
        (site / "robots.txt").write_text(re.sub(r"(?m)^Sitemap: .*$", f"Sitemap: {local}", robots), encoding="utf-8")
        script = step(
            workflow(render(tmp_path), "newsletter-pages.yml"),
            "build",
            "Compare with the published archive (scheduled runs)",
        )
        output = tmp_path / "github-output"
        env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), "RUNNER_TEMP": str(tmp_path)}
        result = subprocess.run(
            [*BASH, "-c", script["run"]], cwd=publication, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert output.read_text() == f"changed={changed}\n"
    assert script["if"] == "github.event_name == 'schedule'"
