"""Benchmark the archive's search on 1,000 generated issues: the index's cost, size, first-query transfer, recall.

The issues are bench/build.py's (the sample's Korean edition, one a week) with each paper given a sentence of
generated Korean words (8,000 stems, Zipf-distributed, with particles: a vocabulary closer to a real archive's
than one issue's 2,000 words repeated)
and, in one issue of ten each, a planted compound (지식증류를, 문장임베딩과, 추가미세조정으로, Diffusion모델).

Prints:
- the build's wall and CPU time with search = false, with search (cold; and Pagefind's peak memory), a no-op
  rebuild, one issue changed, and a cold build with Hangul in the documents the other way (A/B: composed (NFC),
  as Pagefind 1.6 gets it, and 1.5 then keeps the Korean word index in one chunk; or decomposed, as 1.5 gets it);
- the index's size and its chunks: as built, the other way, and without the index-only parts of Hangul words;
- the bytes the first Korean query moves in each of the three (the search page's own load apart), raw and
  gzip-compressed as a compressing static host sends the text files (Pagefind's .pf_* files are gzip already);
- recall of each query, in each of the three: the papers found among those holding it at a word's start or
  inside a Hangul word.
Run: `python bench/search.py [--issues 1000]` (needs Debian's chromium and Playwright, from the test extra).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import os
import random
import re
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

from _common import machine_load
from build import make_publication

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYLLABLES = "가나다라마바사아자차카타파하거너더러머버서어저처커터퍼허고노도로모보소오조초코토포호구누두루무부수우주추"
PARTICLES = ["", "은", "는", "이", "가", "을", "를", "과", "와", "의", "에서", "으로", "하는", "했다", "입니다"]
PLANTED = ["지식증류를", "문장임베딩과", "추가미세조정으로", "Diffusion모델"]
VOCABULARY = 8000  # generated word stems, each with any of the particles: some 60,000 words in all
QUERIES = ["증류", "임베딩", "미세조정", "Diffusion", "학습 저주", "Llama 컨텍스트", "GPT"]


def diversify(paths: list[Path], seed: int = 7) -> None:
    """Give each paper of each issue a sentence of generated words, and one issue of ten a planted compound."""
    rng = random.Random(seed)
    stems = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(VOCABULARY)]
    weights = [1 / (rank + 1) for rank in range(VOCABULARY)]  # Zipf: a few words common, most rare
    for n, path in enumerate(paths):
        text = path.read_text(encoding="utf-8")
        parts = text.split("\n## ")
        for k in range(1, len(parts)):
            words = [stem + rng.choice(PARTICLES) for stem in rng.choices(stems, weights, k=60)]
            if k == 1 + n % 9 and n % 10 < len(PLANTED):
                words.insert(7, PLANTED[n % 10])
            head, _, rest = parts[k].partition("\n")
            parts[k] = f"{head}\n\n{' '.join(words)}.\n{rest}"
        path.write_text("\n## ".join(parts), encoding="utf-8")


def timed(action):
    """(wall s, CPU s of this process and its children, result) of `action()`; syncs the disk first."""
    os.sync()
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = action()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - (b.ru_utime + b.ru_stime) for a, b in zip(after, usage, strict=True))
    return wall, cpu, result


def folder_size(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def expected(site: Path, query: str) -> set[str]:
    """The Korean papers holding every word of `query` at a word's start or inside a Hangul word."""
    terms = [re.compile(rf"(?:^|(?<=\W)|(?<=[\uac00-\ud7a3])){re.escape(t)}", re.I) for t in query.split()]
    found = set()
    for page in (site / "issues").glob("*/index.html"):
        html = page.read_text(encoding="utf-8")
        for anchor, body in re.findall(r'<section class="paper" id="([^"]+)">(.*?)</section>', html, re.S):
            text = re.sub(r"<[^>]+>", " ", body)
            if all(term.search(text) for term in terms):
                found.add(f"/issues/{page.parent.name}/#{anchor}")
    return found


SEARCH = """async (query) => {
  const pagefind = await import("/pagefind/pagefind.js");
  const found = await pagefind.search(query);
  const data = await Promise.all(found.results.map((r) => r.data()));
  return data.flatMap((d) => d.sub_results.map((sub) => sub.url));
}"""


# The results are shown: a count in the message line, or no result at all.
SHOWN = "/[0-9]/.test(document.querySelector('.pagefind-ui__message')?.textContent ?? '')"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No log lines."""


def in_browser(site: Path, queries: list[str]) -> tuple[dict[str, tuple[int, int]], dict[str, set[str]], int]:
    """({url: (raw, gzip) bytes} of the first Korean query, {query: papers found}, the search page's own bytes)."""
    from playwright.sync_api import sync_playwright

    handler = functools.partial(QuietHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            moved: dict[str, tuple[int, int]] = {}
            page_bytes = [0]

            def count(response) -> None:
                body = response.body()
                packed = (
                    len(body)
                    if response.url.split("?")[0].endswith(("pf_meta", "pf_index", "pf_fragment", "pf_filter"))
                    else len(gzip.compress(body))
                )
                if "/pagefind/" in response.url and page_bytes[0] >= 0:
                    moved[response.url.removeprefix(base)] = (len(body), packed)
                else:
                    page_bytes[0] += len(body)

            page.on("response", count)
            page.goto(f"{base}/search/")
            page.wait_for_load_state("networkidle")
            loaded = dict(moved)  # pagefind-ui.js and its style: the page's own load
            moved.clear()
            page.locator(".pagefind-ui__search-input").fill(queries[0])
            page.wait_for_function(SHOWN)  # a count: the first query has results in both runs
            page.locator(".pagefind-ui__result-link").first.wait_for()  # its fragment loaded
            page.wait_for_load_state("networkidle")
            first = dict(moved)
            found = {query: {unquote(u) for u in page.evaluate(SEARCH, query)} for query in queries}
            browser.close()
        server.shutdown()
    own = page_bytes[0] + sum(raw for raw, _ in loaded.values())
    return first, found, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--pagefind", help="a pagefind binary to use (NEWSLETTER_PAGEFIND), e.g. npm's 1.6.0")
    args = parser.parse_args()
    if args.pagefind:
        os.environ["NEWSLETTER_PAGEFIND"] = args.pagefind
    from newsletter.config import load_settings
    from newsletter.render import search
    from newsletter.render.search import find_pagefind
    from newsletter.render.site import build_site

    print(machine_load())
    print(f"pagefind: {find_pagefind()}")
    with tempfile.TemporaryDirectory(prefix="newsletter-search-bench-") as tmp:
        runs = {}
        for name in ("off", "on", "other", "no-parts"):
            folder = Path(tmp) / name
            folder.mkdir()
            paths = make_publication(folder, args.issues)
            diversify(paths)
            if name != "off":  # build.make_publication turns search off
                config = folder / "pyproject.toml"
                config.write_text(config.read_text().replace("search = false", "search = true", 1))
            runs[name] = folder, paths
        size = sum(p.stat().st_size for p in runs["on"][1]) / len(runs["on"][1]) / 1024
        print(f"{args.issues} issues, {size:.1f} KB each on average")

        off, _ = runs["off"]
        wall_off, cpu_off, _ = timed(lambda: build_site(load_settings(off)))
        print(f"cold build, search = false:   {wall_off:6.2f} s wall, {cpu_off:6.2f} CPU-s")
        on, paths = runs["on"]
        wall_on, cpu_on, result = timed(lambda: build_site(load_settings(on)))
        print(
            f"cold build with search:       {wall_on:6.2f} s wall, {cpu_on:6.2f} CPU-s "
            f"(the index: {result.search.seconds:.2f} s for {result.search.papers} papers, "
            f"{result.search.seconds / (wall_on - result.search.seconds):.2f}x the rest of the build; "
            f"pagefind's peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB)"
        )
        print(
            f"  in CPU time (steadier on a loaded machine): the index {cpu_on - cpu_off:.1f} CPU-s, "
            f"{(cpu_on - cpu_off) / cpu_off:.1f}x the build's {cpu_off:.1f}"
        )
        wall, cpu, result = timed(lambda: build_site(load_settings(on)))
        print(
            f"no-op rebuild with search:    {wall:6.2f} s wall, {cpu:6.2f} CPU-s "
            f"(index skipped: {result.search.skipped})"
        )
        with paths[len(paths) // 2].open("a", encoding="utf-8") as handle:
            handle.write("\n한 문단 더.\n")
        wall, cpu, result = timed(lambda: build_site(load_settings(on)))
        print(
            f"one issue changed, search:    {wall:6.2f} s wall, {cpu:6.2f} CPU-s "
            f"(the index: {result.search.seconds:.2f} s)"
        )
        index = on / "site" / "pagefind"
        # B: the same terms with Hangul the other way: composed (NFC) where the build decomposes it for Pagefind
        # 1.5, which files each composed Hangul word as a variant of its decomposed key and splits its word index
        # counting only the others, so the Korean words stay in one chunk; decomposed where 1.6 gets it composed.
        splits = search.splits_composed_hangul
        built = "composed (NFC)" if splits(find_pagefind()) else "decomposed (NFD)"
        other = "decomposed (NFD)" if splits(find_pagefind()) else "composed (NFC)"
        other_folder, _ = runs["other"]
        search.splits_composed_hangul = lambda binary: not splits(binary)
        try:
            wall, cpu, result = timed(lambda: build_site(load_settings(other_folder)))
        finally:
            search.splits_composed_hangul = splits
        print(
            f"cold build, Hangul {other}: {wall:6.2f} s wall, {cpu:6.2f} CPU-s "
            f"(the index: {result.search.seconds:.2f} s; as built: {built})"
        )
        plain, _ = runs["no-parts"]
        original = search.inner_parts
        search.inner_parts = lambda text: []
        try:
            build_site(load_settings(plain))
        finally:
            search.inner_parts = original
        bare = plain / "site" / "pagefind"
        sites = {built: on, other: other_folder, "without parts": plain}
        for label, folder in sites.items():
            folder = folder / "site" / "pagefind"
            chunks = sorted(p.stat().st_size for p in folder.rglob("*.pf_index"))
            print(
                f"index {label:15s} {folder_size(folder) / 1e6:6.1f} MB in all, word index "
                f"{folder_size(folder, '*.pf_index') / 1e6:5.2f} MB in {len(chunks)} chunks "
                f"(median {chunks[len(chunks) // 2] / 1e3:.0f} KB, largest {chunks[-1] / 1e3:.0f} KB), fragments "
                f"{folder_size(folder, '*.pf_fragment') / 1e6:5.2f} MB"
            )
        growth = folder_size(index, "*.pf_index") / folder_size(bare, "*.pf_index") - 1
        print(f"the parts add {growth * 100:.0f} % to the word index")

        for label, folder in sites.items():
            first, found, own = in_browser(
                folder / "site", QUERIES if label != "without parts" else [QUERIES[3], *QUERIES]
            )
            raw, packed = sum(r for r, _ in first.values()), sum(p for _, p in first.values())
            if label == built:
                print(f"search page's own load: {own / 1e3:.0f} KB raw (pagefind-ui.js and its CSS load only there)")
            print(
                f"{label}: first Korean query ({QUERIES[0]!r}): {raw / 1e3:.0f} KB raw, "
                f"{packed / 1e3:.0f} KB as a compressing host sends it:"
            )
            for url, (r, p) in sorted(first.items(), key=lambda item: -item[1][0])[:8]:
                print(f"  {url.split('?')[0]:48s} {r / 1e3:7.1f} KB raw {p / 1e3:7.1f} KB sent")
            print(f"recall {label}:")
            for query in QUERIES:
                want = expected(on / "site", query)
                hit = len(want & found[query])
                print(
                    f"  {query!r:20s} {hit}/{len(want)} = {hit / max(1, len(want)) * 100:5.1f} % "
                    f"({len(found[query])} found)"
                )


if __name__ == "__main__":
    main()
