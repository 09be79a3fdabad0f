// Progressive enhancements only: every page works without this file.
(function () {
  "use strict";

  // Copy a token to the clipboard from the one-time page.
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    var status = document.querySelector(".copy-status");
    button.hidden = false;
    button.addEventListener("click", function () {
      var done = function () { if (status) { status.textContent = "Copied to the clipboard."; } };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () { input.select(); });
      } else {
        input.select();
        if (document.execCommand("copy")) { done(); }
      }
    });
  });
  document.querySelectorAll("[data-secret]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });

  // Show only the permissions of the chosen application.
  var application = document.getElementById("id_application");
  var groups = document.querySelectorAll(".role-group[data-application]");
  function followApplication() {
    groups.forEach(function (group) {
      var shown = group.getAttribute("data-application") === application.value;
      group.hidden = !shown;
      if (!shown) {
        group.querySelectorAll("input[type=checkbox]").forEach(function (box) { box.checked = false; });
      }
    });
  }
  if (application && groups.length) {
    application.addEventListener("change", followApplication);
    followApplication();
  }

  // Picking a date selects "Choose a date"; a preset fills the date in. Either
  // way the page says the day the token will expire, as the server renders it.
  var dateInput = document.getElementById("id_expires_on");
  var presets = document.querySelectorAll("input[name=expiry_preset]");
  var result = document.getElementById("expiry-result");
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // Days are counted from the server's date (data-today), in UTC, so the page
  // agrees with the form's bounds whatever the browser's time zone.
  function isoDay(date) { return date.toISOString().slice(0, 10); }
  function presetDay(days) {
    var day = new Date((result && result.getAttribute("data-today")) || isoDay(new Date()));
    day.setUTCDate(day.getUTCDate() + days);
    return isoDay(day);
  }
  function showResult(iso) {
    if (!result) { return; }
    var parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || "");
    if (!parts) { result.hidden = true; return; }
    var time = result.querySelector("time");
    time.setAttribute("datetime", iso);
    time.textContent = parseInt(parts[3], 10) + " " + MONTHS[parseInt(parts[2], 10) - 1] + " " + parts[1];
    result.hidden = false;
  }
  if (dateInput && presets.length) {
    dateInput.addEventListener("input", function () {
      presets.forEach(function (radio) { radio.checked = radio.value === "custom"; });
      showResult(dateInput.value);
    });
    presets.forEach(function (radio) {
      radio.addEventListener("change", function () {
        if (radio.value === "custom") { showResult(dateInput.value); return; }
        dateInput.value = presetDay(parseInt(radio.value, 10));
        showResult(dateInput.value);
      });
    });
  }

  // After a refused submission, focus goes to the first problem (screen
  // readers then read it, and nobody has to hunt for it on a phone).
  var problem = document.querySelector("form .form-errors, form .has-error");
  if (problem) {
    var controls = [].filter.call(
      problem.querySelectorAll("input:not([type=hidden]):not([disabled]), select, textarea"),
      function (el) { return el.offsetParent !== null; }  // not in a hidden permission group
    );
    var chosen = controls.filter(function (el) { return el.type === "radio" && el.checked; });
    var target = chosen[0] || controls[0] || problem;
    if (target === problem) { problem.setAttribute("tabindex", "-1"); }
    target.focus();
  }

  // The profile menu closes with Escape and when focus or a click leaves it.
  var menu = document.querySelector(".profile-menu");
  if (menu) {
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.open) { menu.open = false; menu.querySelector("summary").focus(); }
    });
    document.addEventListener("click", function (event) {
      if (menu.open && !menu.contains(event.target)) { menu.open = false; }
    });
  }
})();
