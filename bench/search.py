"""Benchmark the archive's search on 1,000 generated issues: the index's cost, size, first-query transfer, recall.

The issues are bench/build.py's (the sample's Korean edition, one a week) with each paper given a sentence of
generated Korean words (8,000 stems, Zipf-distributed, with particles: a vocabulary closer to a real archive's
than one issue's 2,000 words repeated)
and, in one issue of ten each, a planted compound (지식증류를, 문장임베딩과, 추가미세조정으로, Diffusion모델).

Prints, A/B in one run: the index as one Pagefind run over every issue (A), and in bundles of 250 issues (B,
search.py's way: a Pagefind run each, two at once, only the bundles whose pages changed indexed again):
- the build's wall and CPU time with search = false, and with search: cold (and Pagefind's peak memory: the
  largest run's, and the sum of the runs at once, sampled), a no-op rebuild, one issue edited (in the middle:
  one bundle), one issue added (the newest bundle); the index's CPU time is each build's less search = false's;
- the index's size and its chunks;
- the bytes the first Korean query moves (every file of pagefind/ the search page fetches but its UI's script
  and style, bundles.json and every bundle's files included), raw and gzip-compressed as a compressing static
  host sends the text files (Pagefind's .pf_* files are gzip already);
- recall of each query: the papers found (over every bundle, merged as the search page merges them) among
  those holding it at a word's start or inside a Hangul word.
With --hangul-ab, also a cold build with Hangul the other way (composed (NFC), as Pagefind 1.6 gets it, and 1.5
then keeps the Korean word index in one chunk; or decomposed, as 1.5 gets it), and one without the index-only
parts of Hangul words: their sizes, first query and recall.
Run: `python bench/search.py [--issues 1000] [--bundle 250] [--hangul-ab]` (needs Debian's chromium and
Playwright, from the test extra).
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

from _common import TreeMemory, machine_load
from build import add_issue, make_publication

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


class PagefindMemory(TreeMemory):
    """The peak of the summed RSS of this process' pagefind children (the runs at once), sampled every 20 ms;
    its own CPU time is kept apart (`cpu`), for timed to leave out."""

    def __init__(self) -> None:
        super().__init__(os.getpid(), 0.02)
        self.cpu = 0.0

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            started, rss = time.thread_time(), 0
            for pid in self.tree()[1:]:
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() != "pagefind":
                        continue
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            rss += int(line.split()[1])
                except OSError:
                    continue  # it ended between listing and reading
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.cpu += time.thread_time() - started


def timed(action, memory: bool = False):
    """(wall s, CPU s of this process and its children, result, pagefind runs' summed peak RSS in MB) of
    `action()`; syncs the disk first."""
    os.sync()
    sampler = PagefindMemory() if memory else None
    if sampler:
        sampler.start()
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = action()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - (b.ru_utime + b.ru_stime) for a, b in zip(after, usage, strict=True))
    if sampler:
        sampler.stopped.set()
        sampler.join()
        cpu -= sampler.cpu
    return wall, cpu, result, (sampler.peak_rss_kb / 1024 if sampler else 0.0)


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


# As the search page does (static/search.js): the newest bundle of the page's language, the others merged.
# Merged once a page (each query of the page's searches the same instance).
SEARCH = """async (query) => {
  window.merged ??= (async () => {
    const listed = (await (await fetch("/pagefind/bundles.json")).json()).bundles;
    const [main, ...others] = listed.filter((b) => b.languages.includes("ko")).map((b) => `/pagefind/${b.path}`);
    const pagefind = await import(`${main}pagefind.js`);
    await pagefind.options({ basePath: main });
    for (const other of others) await pagefind.mergeIndex(other);
    return pagefind;
  })();
  const pagefind = await window.merged;
  const found = await pagefind.search(query);
  const data = await Promise.all(found.results.map((r) => r.data()));
  return data.flatMap((d) => d.sub_results.map((sub) => sub.url));
}"""


# The results are shown: a count in the message line, or no result at all.
SHOWN = "/[0-9]/.test(document.querySelector('.pagefind-ui__message')?.textContent ?? '')"


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # a query's results load their fragments at once, from every bundle (5: refused)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No log lines."""


def in_browser(site: Path, queries: list[str]) -> tuple[dict[str, tuple[int, int]], dict[str, set[str]], int]:
    """({url: (raw, gzip) bytes} of the first Korean query, {query: papers found}, the search page's own bytes)."""
    from playwright.sync_api import sync_playwright

    handler = functools.partial(QuietHandler, directory=str(site))
    with Server(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            moved: dict[str, tuple[int, int]] = {}
            page_bytes = [0]

            def count(response) -> None:
                try:
                    body = response.body()
                except Exception:  # noqa: BLE001 (a response still coming in when the browser closes)
                    return
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
            # pagefind-ui.js and its style: the page's own load; bundles.json (and any bundle's file) the search's
            loaded = {url: sizes for url, sizes in moved.items() if url.startswith("/pagefind/pagefind-ui.")}
            for url in loaded:
                del moved[url]
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


def make(folder: Path, issues: int) -> list[Path]:
    folder.mkdir()
    paths = make_publication(folder, issues)
    diversify(paths)
    config = folder / "pyproject.toml"  # build.make_publication turns search off
    config.write_text(config.read_text().replace("search = false", "search = true", 1))
    return paths


def chunks_line(label: str, folder: Path) -> str:
    chunks = sorted(p.stat().st_size for p in folder.rglob("*.pf_index"))
    metas = sorted(p.stat().st_size for p in folder.glob("*/pagefind.*.pf_meta")) or [0]
    return (
        f"index {label:18s} {folder_size(folder) / 1e6:6.1f} MB in all, word index "
        f"{folder_size(folder, '*.pf_index') / 1e6:5.2f} MB in {len(chunks)} chunks "
        f"(median {chunks[len(chunks) // 2] / 1e3:.0f} KB, largest {chunks[-1] / 1e3:.0f} KB), fragments "
        f"{folder_size(folder, '*.pf_fragment') / 1e6:5.2f} MB, meta {metas[0] / 1e3:.1f}-{metas[-1] / 1e3:.1f} KB"
    )


def browse(label: str, folder: Path, queries: list[str], show_own: bool) -> None:
    first, found, own = in_browser(folder / "site", queries)
    raw, packed = sum(r for r, _ in first.values()), sum(p for _, p in first.values())
    if show_own:
        print(f"search page's own load: {own / 1e3:.0f} KB raw (pagefind-ui.js and its CSS load only there)")
    print(
        f"{label}: first Korean query ({queries[0]!r}): {raw / 1e3:.0f} KB raw, "
        f"{packed / 1e3:.0f} KB as a compressing host sends it, in {len(first)} files:"
    )
    kinds: dict[str, list[int]] = {}
    for url, (r, _) in first.items():
        name = url.split("?")[0].rsplit("/", 1)[-1]
        kind = name.rsplit(".", 1)[-1] if name.startswith(("ko_", "pagefind.ko")) else name
        kinds.setdefault(kind.replace(".pagefind", "").replace("wasm.unknown", "wasm"), []).append(r)
    print(
        "  "
        + ", ".join(
            f"{kind} {len(sizes)} x {sum(sizes) / len(sizes) / 1e3:.1f} KB"
            for kind, sizes in sorted(kinds.items(), key=lambda item: -sum(item[1]))
        )
    )
    for url, (r, p) in sorted(first.items(), key=lambda item: -item[1][0])[:6]:
        print(f"  {url.split('?')[0]:52s} {r / 1e3:7.1f} KB raw {p / 1e3:7.1f} KB sent")
    print(f"recall {label}:")
    for query in QUERIES:
        want = expected(folder / "site", query)
        hit = len(want & found[query])
        print(f"  {query!r:20s} {hit}/{len(want)} = {hit / max(1, len(want)) * 100:5.1f} % ({len(found[query])} found)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--bundle", type=int, default=250, help="issues a bundle of B holds")
    parser.add_argument("--pagefind", help="a pagefind binary to use (NEWSLETTER_PAGEFIND), e.g. npm's 1.6.0")
    parser.add_argument("--hangul-ab", action="store_true", help="also Hangul the other way, and without parts")
    args = parser.parse_args()
    if args.pagefind:
        os.environ["NEWSLETTER_PAGEFIND"] = args.pagefind
    from newsletter.config import load_settings
    from newsletter.render import search
    from newsletter.render.search import BUNDLE_ENV, find_pagefind
    from newsletter.render.site import build_site

    print(machine_load())
    print(f"pagefind: {find_pagefind()}")
    variants = {"A one index": 10**9, f"B bundles of {args.bundle}": args.bundle}  # A: every issue, added too
    with tempfile.TemporaryDirectory(prefix="newsletter-search-bench-") as tmp:
        off = Path(tmp) / "off"
        off.mkdir()
        paths = make_publication(off, args.issues)
        diversify(paths)
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"{args.issues} issues, {size:.1f} KB each on average")
        wall_off, cpu_off, _, _ = timed(lambda: build_site(load_settings(off)))
        print(f"cold build, search = false:   {wall_off:6.2f} s wall, {cpu_off:6.2f} CPU-s")
        cost: dict[str, dict[str, float]] = {}
        for label, bundle in variants.items():
            os.environ[BUNDLE_ENV] = str(bundle)
            folder = Path(tmp) / label.split()[0]
            paths = make(folder, args.issues)
            build = functools.partial(lambda root: build_site(load_settings(root)), folder)
            print(f"{label}:")
            wall, cpu, result, summed = timed(build, memory=True)
            found = result.search
            cost[label] = {"cold": cpu - cpu_off, "cold wall": wall, "memory": summed, "peak": found.peak_kb}
            print(
                f"  cold build with search: {wall:6.2f} s wall, {cpu:6.2f} CPU-s; the index {cpu - cpu_off:5.1f} "
                f"CPU-s = {(cpu - cpu_off) / cpu_off:4.1f}x the build's {cpu_off:.1f} (Pagefind's runs "
                f"{found.pagefind_cpu:.1f} CPU-s; {found.bundles} bundles, {found.papers} papers, {found.seconds:.1f} "
                f"s wall); Pagefind's peak RSS {found.peak_kb / 1024:.0f} MB the largest run, {summed:.0f} MB the "
                "runs at once (sampled)"
            )
            wall, cpu, result, _ = timed(build)
            print(f"  no-op rebuild:          {wall:6.2f} s wall, {cpu:6.2f} CPU-s (skipped: {result.search.skipped})")
            with paths[len(paths) // 2].open("a", encoding="utf-8") as handle:
                handle.write("\n한 문단 더.\n")
            for step, change in (("edited", None), ("added", functools.partial(add_issue, folder))):
                if change:
                    change()
                wall, cpu, result, _ = timed(build)
                found = result.search
                cost[label][step] = found.pagefind_cpu
                print(
                    f"  one issue {step}:       {wall:6.2f} s wall, {cpu:6.2f} CPU-s (the index: {found.seconds:.2f} "
                    f"s wall, Pagefind {found.pagefind_cpu:.2f} CPU-s for the bundles {list(found.indexed)})"
                )
            print("  " + chunks_line(label, folder / "site" / "pagefind"))
        a, b = cost.values()
        print(
            f"B/A: cold index CPU {b['cold'] / a['cold']:.2f}, cold wall {b['cold wall'] / a['cold wall']:.2f}, "
            f"Pagefind's peak memory: the runs at once {b['memory'] / max(a['memory'], 1):.2f}, the largest run "
            f"{b['peak'] / max(a['peak'], 1):.2f}; Pagefind's CPU for an edit {b['edited'] / a['edited']:.2f}, "
            f"for an issue added {b['added'] / a['added']:.2f}"
        )
        for n, (label, _) in enumerate(variants.items()):
            browse(label, Path(tmp) / label.split()[0], QUERIES, n == 0)
        if args.hangul_ab:
            hangul_ab(args, Path(tmp), load_settings, search, build_site, find_pagefind)


def hangul_ab(args, tmp: Path, load_settings, search, build_site, find_pagefind) -> None:
    """B's bundles with Hangul the other way, and without the index-only parts of Hangul words."""
    splits = search.splits_composed_hangul
    other = "decomposed (NFD)" if splits(find_pagefind()) else "composed (NFC)"
    other_folder, plain = tmp / "other", tmp / "no-parts"
    make(other_folder, args.issues)
    make(plain, args.issues)
    search.splits_composed_hangul = lambda binary: not splits(binary)
    try:
        wall, cpu, result, _ = timed(lambda: build_site(load_settings(other_folder)))
    finally:
        search.splits_composed_hangul = splits
    print(f"cold build, Hangul {other}: {wall:6.2f} s wall, {cpu:6.2f} CPU-s (index {result.search.seconds:.2f} s)")
    from newsletter.render import search_documents

    original = search_documents.inner_parts
    search_documents.inner_parts = lambda text: []
    try:
        build_site(load_settings(plain))
    finally:
        search_documents.inner_parts = original
    for label, folder in {other: other_folder, "without parts": plain}.items():
        print(chunks_line(label, folder / "site" / "pagefind"))
        browse(label, folder, QUERIES if label != "without parts" else [QUERIES[3], *QUERIES], False)


if __name__ == "__main__":
    main()
