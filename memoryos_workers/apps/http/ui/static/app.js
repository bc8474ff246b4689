// The inspector's little JavaScript (served from /ui/static: the page's CSP allows no inline script).
// Everything works without it; it adds confirmations, a user filter and copying the prompt.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Forms that change something ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Filter the user list as you type.
  const filter = document.getElementById("user-filter");
  if (filter) {
    filter.addEventListener("input", () => {
      const needle = filter.value.trim().toLowerCase();
      for (const item of document.querySelectorAll("#users li")) {
        item.hidden = needle !== "" && !item.textContent.toLowerCase().includes(needle);
      }
    });
  }

  // Copy the rendered prompt.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (error) {
        button.textContent = "Copy failed";
      }
    });
  }
});
