// The dashboard's only script; every page works without it.
// An element with data-refresh="SECONDS" is fetched again from the page's own URL every
// SECONDS while the tab is visible and replaced by the element of the same id: live
// figures and charts without a reload. Nothing is loaded from another origin.
"use strict";
(function () {
  function refresh(element, seconds) {
    window.setTimeout(async function tick() {
      if (document.visibilityState === "visible") {
        try {
          const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "x-refresh": "1" } });
          if (response.ok) {
            const page = new DOMParser().parseFromString(await response.text(), "text/html");
            const fresh = page.getElementById(element.id);
            if (fresh) { element.replaceWith(fresh); element = fresh; }
          }
        } catch (error) { /* offline for a moment: try again at the next tick */ }
      }
      window.setTimeout(tick, seconds * 1000);
    }, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    for (const element of document.querySelectorAll("[data-refresh][id]")) {
      const seconds = Number(element.dataset.refresh);
      if (seconds >= 1) { refresh(element, seconds); }
    }
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    }
  });
})();
