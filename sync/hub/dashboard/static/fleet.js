// Redraw the fleet table every 2 s from the server's own rendering of it (same filters and sort).
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  function refresh() {
    fetch("/fleet/rows?" + live.dataset.query, {credentials: "same-origin"}).then(function (r) {
      if (r.redirected || !r.ok) return null;
      return r.text();
    }).then(function (html) { if (html !== null && html !== undefined) live.innerHTML = html; })
      .catch(function () {}).finally(function () { setTimeout(refresh, 2000); });
  }
  setTimeout(refresh, 2000);
})();
