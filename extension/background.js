// demotrace recorder bridge: tells the demotrace recorder on this computer which page each browser
// window shows and what a click or a focus lands on, so the recorder captures only what its policy
// allows. Reports go to the native messaging host "com.demotrace.recorder" (the local recorder) and
// nowhere else. They never hold typed values or page text: URLs lose their query, fragment and
// credentials here, before they leave the browser.
"use strict";

const HOST = "com.demotrace.recorder";
// A host that cannot reach the recorder exits; the next browser event tries again, at most this often.
const RETRY_MS = 10000;
const NAME_MAX = 100;
const SENSITIVE_KINDS = new Set(["", "password", "card"]);

let port = null;
let lastAttempt = -Infinity;

function connect() {
  if (port !== null) {
    return port;
  }
  const now = Date.now();
  if (now - lastAttempt < RETRY_MS) {
    return null;
  }
  lastAttempt = now;
  try {
    port = chrome.runtime.connectNative(HOST);
  } catch (error) {
    port = null;
    return null;
  }
  port.onDisconnect.addListener(() => {
    void chrome.runtime.lastError; // read, so the browser does not log it as unchecked
    port = null;
  });
  port.onMessage.addListener(() => {}); // the recorder sends nothing back
  reportWindows(); // a new recorder connection starts with the whole picture
  return port;
}

function post(message) {
  const target = connect();
  if (target === null) {
    return;
  }
  try {
    target.postMessage(message);
  } catch (error) {
    port = null;
  }
}

// Origin and path only: the query and fragment often carry what was typed (searches) or tokens.
function pageAddress(raw) {
  if (!raw) {
    return "";
  }
  try {
    const url = new URL(raw);
    if (url.protocol === "http:" || url.protocol === "https:") {
      return `${url.protocol}//${url.host}${url.pathname}`;
    }
    return `${url.protocol}${url.host ? "//" + url.host : ""}${url.pathname}`;
  } catch (error) {
    return "";
  }
}

function describeWindow(win) {
  const tab = (win.tabs || []).find((candidate) => candidate.active);
  return {
    id: win.id,
    focused: Boolean(win.focused),
    incognito: Boolean(win.incognito),
    left: win.left ?? 0,
    top: win.top ?? 0,
    width: win.width ?? 0,
    height: win.height ?? 0,
    url: tab ? pageAddress(tab.url || tab.pendingUrl || "") : "",
  };
}

async function reportWindows() {
  let windows;
  try {
    windows = await chrome.windows.getAll({ populate: true, windowTypes: ["normal", "popup", "app"] });
  } catch (error) {
    return;
  }
  post({ type: "windows", windows: windows.map(describeWindow) });
}

function text(value) {
  return typeof value === "string" ? value.slice(0, NAME_MAX) : "";
}

function number(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

// What a content script tells us, cut down to the fields the recorder knows and nothing else.
function elementReport(message, sender) {
  const tab = sender.tab;
  if (!tab || typeof message !== "object" || message === null) {
    return null;
  }
  if (!["click", "focus", "blur"].includes(message.event)) {
    return null;
  }
  const box = message.box;
  return {
    type: "element",
    event: message.event,
    window: tab.windowId,
    incognito: Boolean(tab.incognito),
    frame: sender.frameId || 0,
    x: number(message.x),
    y: number(message.y),
    role: text(message.role),
    name: text(message.name),
    input_type: text(message.input_type),
    autocomplete: text(message.autocomplete),
    sensitive: SENSITIVE_KINDS.has(message.sensitive) ? message.sensitive : "",
    box:
      box && [box.left, box.top, box.width, box.height].every((v) => number(v) !== null)
        ? { left: box.left, top: box.top, width: box.width, height: box.height }
        : null,
  };
}

chrome.runtime.onMessage.addListener((message, sender) => {
  const report = elementReport(message, sender);
  if (report !== null) {
    post(report);
  }
});

chrome.windows.onFocusChanged.addListener(reportWindows);
chrome.windows.onCreated.addListener(reportWindows);
chrome.windows.onRemoved.addListener(reportWindows);
if (chrome.windows.onBoundsChanged) {
  chrome.windows.onBoundsChanged.addListener(reportWindows);
}
chrome.tabs.onActivated.addListener(reportWindows);
chrome.tabs.onAttached.addListener(reportWindows);
chrome.tabs.onDetached.addListener(reportWindows);
chrome.tabs.onRemoved.addListener(reportWindows);
chrome.tabs.onUpdated.addListener((tabId, change) => {
  if (change.url !== undefined || change.status === "loading") {
    reportWindows();
  }
});
chrome.runtime.onStartup.addListener(reportWindows);
chrome.runtime.onInstalled.addListener(reportWindows);
reportWindows();
