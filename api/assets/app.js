// Slipway's pages work without this script; with it they are live.
//
// - An element with `data-live="URL"` listens to the server-sent events of
//   URL: a `swap` event carries HTML whose elements replace the ones of the
//   same id; a `line` event carries log lines for the element marked
//   `data-log`; `end` says nothing more will come. After a dropped connection
//   the browser reconnects by itself and sends the id of the last event it
//   had (Last-Event-ID), so the log resumes without a gap or a duplicate.
// - `<time data-relative>` elements say "4 min ago" and keep saying it right.
"use strict";

(function () {
  const template = document.createElement("template");

  function fragments(html) {
    template.innerHTML = html;
    return Array.from(template.content.children);
  }

  // What a person typed or focused survives a swap: the new element's
  // fields with the same id get the old values, and focus goes back.
  function carryOver(old, element) {
    const focused = document.activeElement;
    for (const field of old.querySelectorAll("input[id], textarea[id], select[id]")) {
      const twin = element.querySelector(`#${CSS.escape(field.id)}`);
      if (twin && field.type !== "hidden") twin.value = field.value;
    }
    return focused && old.contains(focused) && focused.id ? focused : null;
  }

  function swap(html) {
    for (const element of fragments(html)) {
      const old = element.id && document.getElementById(element.id);
      if (!old || old.isEqualNode(element)) continue;
      const focused = carryOver(old, element);
      old.replaceWith(element);
      if (focused) {
        const twin = document.getElementById(focused.id);
        if (twin) {
          twin.focus();
          if (typeof focused.selectionStart === "number" && twin.setSelectionRange) {
            twin.setSelectionRange(focused.selectionStart, focused.selectionEnd);
          }
        }
      }
    }
    relativeTimes();
  }

  // Following the log: new lines keep the bottom in view while it was in
  // view; scrolling up stops that until the reader scrolls back down.
  function atBottom() {
    const doc = document.documentElement;
    return window.innerHeight + window.scrollY >= doc.scrollHeight - 40;
  }

  function append(log, html) {
    const follow = atBottom();
    for (const element of fragments(html)) {
      if (element.id && document.getElementById(element.id)) continue;
      log.appendChild(element);
    }
    const empty = log.querySelector("[data-empty]");
    if (empty && log.children.length > 1) empty.remove();
    if (follow && !location.hash) window.scrollTo(0, document.documentElement.scrollHeight);
  }

  // The browser reconnects by itself after a dropped connection; when it
  // gives up (the session ended, so the server answers with a redirect),
  // the page says so instead of going quietly stale.
  function listen(element) {
    const source = new EventSource(element.dataset.live);
    const state = document.querySelector("[data-connection]");
    const say = (text) => {
      if (!state) return;
      state.textContent = text;
      state.hidden = false;
    };
    source.addEventListener("open", () => { if (state) state.hidden = true; });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) say("Not live any more: reload the page");
      else say("Reconnecting…");
    });
    source.addEventListener("swap", (event) => swap(event.data));
    source.addEventListener("line", (event) => {
      const log = document.querySelector("[data-log]");
      if (log) append(log, event.data);
    });
    source.addEventListener("end", () => {
      source.close();
      if (state) state.hidden = true;
    });
  }

  // As the server says it (layout::ago): rounded first, then the unit.
  function relative(seconds) {
    if (seconds < 0) return "just now";
    if (seconds < 45) return "just now";
    const plural = (n, unit) => (n === 1 ? `1 ${unit} ago` : `${n} ${unit}s ago`);
    const minutes = Math.floor((seconds + 30) / 60);
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.floor((seconds + 1800) / 3600);
    if (hours < 24) return plural(hours, "hour");
    const days = Math.floor((seconds + 43200) / 86400);
    if (days < 30) return plural(days, "day");
    const months = Math.floor((days + 15) / 30);
    if (months < 12) return plural(months, "month");
    return plural(Math.floor((days + 182) / 365), "year");
  }

  function relativeTimes() {
    const now = Date.now();
    for (const time of document.querySelectorAll("time[data-relative]")) {
      const at = Date.parse(time.getAttribute("datetime"));
      if (!Number.isNaN(at)) time.textContent = relative((now - at) / 1000);
    }
  }

  document.querySelectorAll("[data-live]").forEach(listen);
  relativeTimes();
  setInterval(relativeTimes, 30000);
})();
