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

  // Picking a date selects "Choose a date"; a preset fills the date in.
  var dateInput = document.getElementById("id_expires_on");
  var presets = document.querySelectorAll("input[name=expiry_preset]");
  if (dateInput && presets.length) {
    dateInput.addEventListener("input", function () {
      presets.forEach(function (radio) { radio.checked = radio.value === "custom"; });
    });
    presets.forEach(function (radio) {
      radio.addEventListener("change", function () {
        if (radio.value === "custom") { return; }
        var day = new Date();
        day.setDate(day.getDate() + parseInt(radio.value, 10));
        dateInput.value = day.toISOString().slice(0, 10);
      });
    });
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
