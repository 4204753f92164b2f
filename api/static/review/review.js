// The reviewer page's keyboard shortcuts (attest). No dependencies, nothing fetched.
// A control with data-key="x" answers the key x: a field is focused, a button is focused (Enter then
// presses it) or, with data-key-submit, pressed. In a field, Ctrl/Cmd+Enter submits its form and Escape
// leaves it. On the queue, j/k move between items.
(function () {
  "use strict";

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      (el.tagName === "INPUT" && !["checkbox", "radio", "submit", "button"].includes(el.type)));
  }

  function moveInList(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("a.item-link"));
    if (!links.length) return;
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links[next].focus();
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (typing(target)) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.form) {
        event.preventDefault();
        target.form.requestSubmit();
      } else if (event.key === "Escape") {
        target.blur();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") {
      var help = document.getElementById("keys-help");
      if (help) help.hidden = !help.hidden;
      return;
    }
    if (event.key === "j" || event.key === "k") {
      if (document.querySelector("a.item-link")) {
        event.preventDefault();
        moveInList(event.key === "j" ? 1 : -1);
      }
      return;
    }
    var control = document.querySelector('[data-key="' + event.key + '"]');
    if (!control) return;
    event.preventDefault();
    if (control.tagName === "A") {
      window.location.assign(control.href);
    } else if (control.hasAttribute("data-key-submit")) {
      control.click();
    } else {
      control.focus();
      if (control.tagName === "TEXTAREA") control.select();
    }
  });

  // After an edit, bring the verification into view (the server redirects to #your-edit).
  document.addEventListener("DOMContentLoaded", function () {
    if (window.location.hash === "#your-edit") {
      var section = document.getElementById("your-edit");
      if (section) section.focus();
    }
  });
})();
