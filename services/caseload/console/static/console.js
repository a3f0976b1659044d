// The worklists' counts, live: the console's own stream (session cookie), relaying caseload's. No inline script.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-live");
  if (!url || !window.EventSource) { return; }
  var source = new EventSource(url);
  source.addEventListener("ready", function () { document.body.setAttribute("data-live-state", "ready"); });
  source.addEventListener("worklists", function (message) {
    var data = JSON.parse(message.data);
    Object.keys(data.counts || {}).forEach(function (name) {
      document.querySelectorAll('[data-count="' + name + '"]').forEach(function (element) {
        element.textContent = String(data.counts[name]);
      });
    });
    var status = document.getElementById("live-status");
    if (status && data.changed && data.changed.length) {
      status.textContent = "Updated: " + data.changed.join(", ").replace(/_/g, " ") + ".";
    }
  });
  source.addEventListener("signed_out", function () {
    source.close();
    window.location.assign("/console/sign-in?ended=1");
  });
})();
