// test-looper live pages: listen to /api/events (Server-Sent Events) and re-render the page's
// #live region when a change concerns it. No framework, no build step.
(function () {
  "use strict";
  var region = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!region || !window.EventSource) return;
  var repo = region.getAttribute("data-live-repo") || "*";
  var wantsMachines = region.hasAttribute("data-live-machines");
  var pending = null;
  var inFlight = false;

  function concerns(change) {
    if (change.kind === "everything") return true;
    if (change.kind === "machines") return wantsMachines;
    return repo === "*" || change.repo === repo;
  }

  function refresh() {
    pending = null;
    if (inFlight) { schedule(); return; }
    inFlight = true;
    fetch(window.location.href, { headers: { "X-Live-Refresh": "1" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) {
          region.innerHTML = fresh.innerHTML;
          region.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { inFlight = false; });
  }

  function schedule() {
    if (pending === null) pending = setTimeout(refresh, 250);
  }

  var source = new EventSource("/api/events");
  source.onopen = function () { if (status) { status.className = "live-status on"; status.title = "live updates on"; } };
  source.onerror = function () { if (status) { status.className = "live-status off"; status.title = "live updates reconnecting"; } };
  source.addEventListener("change", function (event) {
    try {
      if (concerns(JSON.parse(event.data))) schedule();
    } catch (e) { schedule(); }
  });
})();
