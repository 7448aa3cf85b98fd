// demotrace recorder bridge, in each page: on a click and on a focus change, describe the element it
// lands on - role, accessible name, input type, autocomplete hint, whether it takes a password or a
// card number, and its box on the screen - to this extension's background, which passes it to the local
// recorder. Never an input's value and never the page's text beyond an element's short name.
"use strict";

(() => {
  const NAME_MAX = 100;
  const PASSWORD_AUTOCOMPLETE = /\b(current-password|new-password|one-time-code)\b/;
  const CARD_AUTOCOMPLETE = /\bcc-(number|csc|exp|exp-month|exp-year)\b/;
  const INTERACTIVE =
    'a[href],button,input,select,textarea,summary,option,label,[role],[contenteditable=""],' +
    '[contenteditable="true"],[tabindex]';
  const INPUT_ROLES = {
    button: "button",
    submit: "button",
    reset: "button",
    image: "button",
    checkbox: "checkbox",
    radio: "radio",
    range: "slider",
    number: "spinbutton",
    search: "searchbox",
    file: "button",
    color: "button",
  };
  const TAG_ROLES = {
    A: "link",
    BUTTON: "button",
    SELECT: "combobox",
    TEXTAREA: "textbox",
    IMG: "img",
    H1: "heading",
    H2: "heading",
    H3: "heading",
    H4: "heading",
    H5: "heading",
    H6: "heading",
    LI: "listitem",
    OPTION: "option",
    SUMMARY: "button",
    NAV: "navigation",
    MAIN: "main",
    FORM: "form",
    TABLE: "table",
    TD: "cell",
    TH: "columnheader",
    DIALOG: "dialog",
    LABEL: "label",
  };

  // Where this frame's viewport lies on the screen, learnt from the last mouse event (exact, in the
  // browser's screen units); before any, from the window's outer and inner sizes (top frame only).
  let viewportOrigin = null;

  function short(value) {
    return (value || "").replace(/\s+/g, " ").trim().slice(0, NAME_MAX);
  }

  function roleOf(element) {
    const explicit = (element.getAttribute("role") || "").trim().split(/\s+/)[0];
    if (explicit) {
      return explicit;
    }
    if (element.tagName === "INPUT") {
      return INPUT_ROLES[(element.type || "text").toLowerCase()] || "textbox";
    }
    if (element.isContentEditable) {
      return "textbox";
    }
    if (element.tagName === "A" && !element.hasAttribute("href")) {
      return "generic";
    }
    return TAG_ROLES[element.tagName] || "generic";
  }

  function takesText(element, role) {
    return role === "textbox" || role === "searchbox" || role === "combobox" || element.isContentEditable;
  }

  // The accessible name, simplified: labelledby, aria-label, the field's labels, alt, title,
  // placeholder, and for buttons and links their own text. A field's value is never its name.
  function nameOf(element, role) {
    const labelledBy = element.getAttribute("aria-labelledby");
    if (labelledBy) {
      const text = labelledBy
        .split(/\s+/)
        .map((id) => document.getElementById(id))
        .filter((node) => node !== null)
        .map((node) => node.textContent)
        .join(" ");
      if (short(text)) {
        return short(text);
      }
    }
    const label = element.getAttribute("aria-label");
    if (short(label)) {
      return short(label);
    }
    if (element.labels && element.labels.length > 0) {
      const text = Array.from(element.labels, (node) => node.textContent).join(" ");
      if (short(text)) {
        return short(text);
      }
    }
    if (element.tagName === "INPUT" && ["submit", "button", "reset"].includes(element.type)) {
      return short(element.value);
    }
    for (const attribute of ["alt", "title", "placeholder"]) {
      if (short(element.getAttribute(attribute))) {
        return short(element.getAttribute(attribute));
      }
    }
    if (takesText(element, role)) {
      return "";
    }
    return short(element.innerText || element.textContent);
  }

  function sensitivityOf(element) {
    const type = element.tagName === "INPUT" ? (element.type || "").toLowerCase() : "";
    const autocomplete = (element.getAttribute("autocomplete") || "").toLowerCase();
    if (type === "password" || PASSWORD_AUTOCOMPLETE.test(autocomplete)) {
      return "password";
    }
    if (CARD_AUTOCOMPLETE.test(autocomplete)) {
      return "card";
    }
    return "";
  }

  function origin() {
    if (viewportOrigin !== null) {
      return viewportOrigin;
    }
    if (window !== window.top) {
      return null; // a frame's place in the page is unknown until a mouse event shows it
    }
    const border = Math.max(0, (window.outerWidth - window.innerWidth) / 2);
    return {
      x: window.screenX + border,
      y: window.screenY + Math.max(0, window.outerHeight - window.innerHeight - border),
    };
  }

  function describe(element, event, point) {
    const role = roleOf(element);
    const rect = element.getBoundingClientRect();
    const at = origin();
    return {
      event,
      x: point ? point.x : null,
      y: point ? point.y : null,
      role,
      name: nameOf(element, role),
      input_type: element.tagName === "INPUT" ? (element.type || "text").toLowerCase() : "",
      autocomplete: short(element.getAttribute("autocomplete")),
      sensitive: sensitivityOf(element),
      box:
        at === null
          ? null
          : { left: at.x + rect.left, top: at.y + rect.top, width: rect.width, height: rect.height },
    };
  }

  function send(message) {
    try {
      chrome.runtime.sendMessage(message).catch(() => {});
    } catch (error) {
      // the extension was reloaded: this page's script is orphaned and has no one to tell
    }
  }

  function targetOf(event) {
    const path = event.composedPath ? event.composedPath() : [];
    const first = path.length > 0 && path[0] instanceof Element ? path[0] : event.target;
    if (!(first instanceof Element)) {
      return null;
    }
    return first.closest(INTERACTIVE) || first;
  }

  window.addEventListener(
    "pointerdown",
    (event) => {
      viewportOrigin = { x: event.screenX - event.clientX, y: event.screenY - event.clientY };
      const element = targetOf(event);
      if (element !== null) {
        send(describe(element, "click", { x: event.screenX, y: event.screenY }));
      }
    },
    true,
  );

  window.addEventListener(
    "mousemove",
    (event) => {
      viewportOrigin = { x: event.screenX - event.clientX, y: event.screenY - event.clientY };
    },
    { capture: true, passive: true },
  );

  document.addEventListener(
    "focusin",
    (event) => {
      const element = targetOf(event);
      if (element !== null) {
        send(describe(element, "focus", null));
      }
    },
    true,
  );

  document.addEventListener(
    "focusout",
    (event) => {
      if (event.relatedTarget === null) {
        send({ event: "blur" });
      }
    },
    true,
  );
})();
