// The offline indicator: the desk keeps working without a link; this only tells people.
(function () {
  var badge = document.getElementById("online");
  if (!badge) return;
  function update() {
    var on = navigator.onLine;
    badge.textContent = on ? badge.dataset.on : badge.dataset.off;
    badge.className = on ? "" : "offline";
  }
  window.addEventListener("online", update);
  window.addEventListener("offline", update);
  update();
})();
