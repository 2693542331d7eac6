// The search page: Pagefind's default UI over pagefind/, one result per paper (linked to its anchor, with its
// issue and tags), a tag filter, and ?q= to search on arrival. The index-only `parts` field is not shown.
window.addEventListener("DOMContentLoaded", () => {
  const ui = new PagefindUI({
    element: "#search",
    showImages: false,
    showSubResults: false,
    resetStyles: false,
    processResult: (result) => {
      delete result.meta.parts;
      return result;
    },
  });
  const query = new URLSearchParams(window.location.search).get("q");
  if (query) ui.triggerSearch(query);
});
