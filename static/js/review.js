// Review page keyboard shortcuts (no framework). Forms and links work without this file; it only
// presses them. Shortcuts are off while typing in a field, except Ctrl+Enter (save) and Esc (cancel).
(function () {
  "use strict";

  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function submit(id) {
    var form = document.getElementById(id);
    if (form) form.requestSubmit();  // fires "submit", so htmx sends it when loaded
    return !!form;
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link) link.click();
    return !!link;
  }

  function openPanel(id) {
    var panel = document.getElementById(id);
    if (!panel) return false;
    panel.open = true;
    var field = panel.querySelector("textarea, input:not([type=hidden])");
    if (field) field.focus();
    return true;
  }

  function closePanels() {
    document.querySelectorAll("#edit-panel, #reject-panel, #shortcuts").forEach(function (p) { p.open = false; });
    if (document.activeElement) document.activeElement.blur();
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var form = target.closest && target.closest("#edit-form, #reject-form");
    if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (event.key === "Escape") {
      closePanels();
      return;
    }
    if (typing(target) || event.ctrlKey || event.metaKey || event.altKey) return;
    var handled = {
      a: function () { return submit("accept-form"); },
      e: function () { return openPanel("edit-panel"); },
      r: function () { return openPanel("reject-panel"); },
      s: function () { return submit("skip-form"); },
      u: function () { return submit("undo-form"); },
      j: function () { return follow("next-link"); },
      k: function () { return follow("prev-link"); },
      "?": function () {
        var help = document.getElementById("shortcuts");
        if (help) help.open = !help.open;
        return !!help;
      },
    }[event.key];
    if (handled && handled()) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-cancel]")) closePanels();
    if (event.target.closest("[data-shortcuts]")) {
      var help = document.getElementById("shortcuts");
      if (help) help.open = !help.open;
    }
  });

  // A stale edit (409) or a refused decision (400) comes back as a pane to show, not an error to drop.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 409 || status === 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
