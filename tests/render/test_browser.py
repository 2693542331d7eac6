"""The email and the archive page in headless Chromium at phone and desktop widths: no sideways scrolling."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("lang", ["ko", "en"])
def test_email_fits_the_screen(browser, run, tmp_path: Path, artifacts: Path, width: int, lang: str) -> None:
    out = tmp_path / "preview"  # beside the publication copy (tmp_path/pub), not around it
    assert run("preview", "2023-09-25-top-ml-papers", "--out", str(out)).exit_code == 0
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto((out / lang / "email.html").as_uri())
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width
        assert page.locator("h2").count() == 10
        heading = page.locator("h2").first.bounding_box()
        assert heading is not None and heading["x"] >= 0 and heading["x"] + heading["width"] <= width
        font_size = page.evaluate("getComputedStyle(document.querySelector('h3 + p')).fontSize")
        assert float(font_size.rstrip("px")) >= 14
        page.screenshot(path=str(artifacts / f"email-{lang}-{width}.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("width", [375, 1024])
def test_archive_page_fits_the_screen(browser, run, publication: Path, artifacts: Path, width: int) -> None:
    assert run("build").exit_code == 0
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto((publication / "site" / "issues" / "2023-09-25-top-ml-papers" / "index.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.locator("section.paper").count() == 10
        page.screenshot(path=str(artifacts / f"archive-ko-{width}.png"), full_page=False)
    finally:
        page.close()
