// driftguard UI: live pages without a build step. Every element <main data-live="MS"> is re-fetched
// every MS milliseconds (X-Fragment: 1 asks the server for the <main> content only) and replaced when it
// changed; a signed-out session (401) reloads the page, which leads to the sign-in form.
"use strict";
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main) { return; }
  const every = parseInt(main.dataset.live, 10) || 2000;
  let last = main.innerHTML;
  async function poll() {
    try {
      const answer = await fetch(window.location.href, {headers: {"X-Fragment": "1"}, credentials: "same-origin",
                                                        cache: "no-store"});
      if (answer.status === 401) { window.location.reload(); return; }
      if (answer.ok) {
        const html = await answer.text();
        if (html !== last) {
          last = html;
          main.innerHTML = html;
          main.dataset.updated = String(Date.now());
        }
      }
    } catch (error) {
      // the UI is restarting or the network blinked: try again on the next tick
    }
    window.setTimeout(poll, document.hidden ? every * 5 : every);
  }
  window.setTimeout(poll, every);
})();
