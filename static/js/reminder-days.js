// The preset buttons beside a tenant's expiry reminders (iam/tenancy_admin.py,
// ReminderDaysWidget): a click fills the text field, which stays the one
// thing submitted. Hidden until this runs, so no button is ever dead.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const group of document.querySelectorAll(".reminder-presets[data-for]")) {
    const input = document.getElementById(group.dataset.for);
    if (!input) {
      continue;
    }
    const buttons = [...group.querySelectorAll("button[data-days]")];
    const normalized = (text) =>
      text
        .split(/[\s,\[\]]+/)
        .filter(Boolean)
        .map(Number)
        .sort((a, b) => b - a)
        .join(", ");
    const markCurrent = () => {
      const current = normalized(input.value);
      for (const button of buttons) {
        button.setAttribute("aria-pressed", String(button.dataset.days === current));
      }
    };
    group.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-days]");
      if (!button) {
        return;
      }
      input.value = button.dataset.days;
      markCurrent();
      input.focus();
    });
    input.addEventListener("input", markCurrent);
    markCurrent();
    group.hidden = false;
  }
});
