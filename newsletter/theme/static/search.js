// The search page: Pagefind's default UI over pagefind/: each issue found and its papers that match
// (each linked to its anchor), a tag filter, and ?q= to search on arrival.
window.addEventListener("DOMContentLoaded", () => {
  const ui = new PagefindUI({
    element: "#search",
    showImages: false,
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
