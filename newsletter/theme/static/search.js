// The search page: Pagefind's default UI over pagefind/: each issue found with its papers that match (each linked
// to its anchor), a tag filter, and ?q= to search on arrival.
window.addEventListener("DOMContentLoaded", () => {
  const ui = new PagefindUI({
    element: "#search",
    showImages: false,
    showSubResults: true,
    resetStyles: false,
  });
  const query = new URLSearchParams(window.location.search).get("q");
  if (query) ui.triggerSearch(query);
});
