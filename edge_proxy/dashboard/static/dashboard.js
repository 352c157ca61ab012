// edge_proxy dashboard: the little the pages need beyond HTML. Every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // forms that undo something ask first
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // a select that re-draws the page when changed (the usage page's split)
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  // copy a newly shown key
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch (err) {
        button.textContent = "Select and copy";
      }
    });
  }
});
