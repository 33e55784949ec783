// Auto-refresh pauses while the tab is hidden: htmx polls (elements marked data-poll) skip their
// request when nobody can see the page, and catch up at once when the tab is shown again.
document.addEventListener("htmx:beforeRequest", function (event) {
  if (document.hidden && event.detail.elt.hasAttribute("data-poll")) {
    event.preventDefault();
  }
});
document.addEventListener("visibilitychange", function () {
  if (!document.hidden) {
    document.querySelectorAll("[data-poll]").forEach(function (el) { htmx.trigger(el, "refresh"); });
  }
});
