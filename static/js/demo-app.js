// The demo application keeps the embed session in memory only.
(function () {
  "use strict";
  var match = /(?:^#|&)embed-session=([A-Za-z0-9_]+)/.exec(window.location.hash);
  var session = match ? match[1] : null;
  history.replaceState(null, "", window.location.pathname);
  var status = document.getElementById("demo-status");
  if (!session) { status.textContent = "No embed session: open this application from your portal."; return; }
  var timer = null;
  function check() {
  fetch("api/whoami", { headers: { Authorization: "Bearer " + session }, credentials: "omit", referrerPolicy: "no-referrer" })
    .then(function (response) { return response.json().then(function (body) { return [response.status, body]; }); })
    .then(function (result) {
      var body = result[1];
      if (result[0] !== 200 || !body.active) {
        status.textContent = "Your session has ended. Reload the portal.";
        document.getElementById("demo-identity").hidden = true;
        session = null;
        clearInterval(timer);
        return;
      }
      status.textContent = "Signed in through your portal.";
      document.getElementById("demo-user").textContent = body.user.username + " (" + body.user.email + ")";
      document.getElementById("demo-tenant").textContent = body.tenant;
      document.getElementById("demo-application").textContent = body.application.name;
      document.getElementById("demo-permissions").textContent = body.permissions.join(", ");
      document.getElementById("demo-identity").hidden = false;
    })
    .catch(function () { status.textContent = "Could not reach the application."; });
  }
  check();
  // Like a real application, check the session again now and then: it ends
  // as soon as its token is revoked, deleted or expires.
  timer = setInterval(check, 2000);
})();
