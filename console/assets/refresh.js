// Optional: refreshes the charts of the page every 10 s without reloading it.
// The page works without it (reload to see new points).
(function () {
  "use strict";
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("figure.chart").forEach(function (fig) {
          var fresh = doc.getElementById(fig.id);
          if (fresh) { fig.innerHTML = fresh.innerHTML; }
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 10000);
})();
