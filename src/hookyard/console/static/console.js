// Live updating of the events list: progressive enhancement. Without this script the page
// works the same, only without the "Live" checkbox.
"use strict";
(function () {
  var box = document.getElementById("live");
  var rows = document.getElementById("event-rows");
  if (!box || !rows) return;
  box.parentElement.hidden = false;
  var timer = null;

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("event-rows");
        if (fresh) rows.replaceChildren.apply(rows, Array.from(fresh.childNodes));
      })
      .catch(function () { /* a missed refresh is retried on the next tick */ });
  }

  box.addEventListener("change", function () {
    if (timer) { clearInterval(timer); timer = null; }
    if (box.checked) { refresh(); timer = setInterval(refresh, 5000); }
  });
})();
