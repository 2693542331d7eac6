// The search page: Pagefind's default UI over the index's bundles (pagefind/b<n>/, listed newest first with
// their languages in pagefind/bundles.json): the newest bundle of this page's language, and the others of it
// merged (Pagefind's mergeIndex), so results and the tag filter come from every issue. Each issue found is
// shown with its papers that match (each linked to its anchor); ?q= searches on arrival.
window.addEventListener("DOMContentLoaded", async () => {
  const element = document.querySelector("#search");
  const root = new URL(element.dataset.bundles, window.location.href);
  const response = await fetch(new URL("bundles.json", root));
  if (!response.ok) return; // no index yet: nothing is out
  const lang = document.documentElement.lang.toLowerCase();
  const bundles = (await response.json()).bundles;
  // A bundle without this language is left out: Pagefind would search its default language there instead.
  const mine = bundles.filter((bundle) => bundle.languages.includes(lang));
  const [main, ...others] = (mine.length ? mine : bundles).map((bundle) => new URL(bundle.path, root).pathname);
  const ui = new PagefindUI({
    element: "#search",
    bundlePath: main,
    mergeIndex: others.map((bundlePath) => ({ bundlePath })),
    showImages: false,
    // Three issues at first (each with its matching papers), then "Load more": each issue shown loads its
    // fragment of the index (~16 KB here), which is most of what a first query moves.
    pageSize: 3,
    showSubResults: true,
    resetStyles: false,
    // An excerpt may come from the index-only inner parts of Hangul words (search.py): each issue is shown by
    // its title and date, each matching paper by its title alone.
    processResult: (result) => {
      result.excerpt = "";
      for (const sub of result.sub_results) sub.excerpt = "";
      return result;
    },
  });
  const query = new URLSearchParams(window.location.search).get("q");
  if (query) ui.triggerSearch(query);
});
