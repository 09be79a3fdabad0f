// Hands the embed session to the application's embed URL through a URL
// fragment (never sent to a server), after removing it from this page's URL.
(function () {
  "use strict";
  var match = /(?:^#|&)session=([A-Za-z0-9_]+)/.exec(window.location.hash);
  var frame = document.getElementById("embedded-app");
  history.replaceState(null, "", window.location.pathname);
  if (!match) {
    document.querySelector(".embed-missing").hidden = false;
    frame.hidden = true;
    return;
  }
  frame.src = frame.getAttribute("data-embed-url") + "#embed-session=" + match[1];
})();
