// Keeps a console region current while the page is open: every element with
// data-live-events listens to that Server-Sent Events stream (WatchSettings through the
// gateway) and, on each change, fetches data-live-src (the same region, rendered by the
// server) and swaps it in. No value is ever built into HTML here: the server renders and
// escapes, this only moves its nodes. If the session has ended, the fetch lands on the
// sign-in page, and the page is reloaded to show it.
"use strict";

for (const region of document.querySelectorAll("[data-live-events]")) {
  let latest = 0;
  const refresh = async () => {
    const asked = ++latest;
    const reply = await fetch(region.dataset.liveSrc, { credentials: "same-origin" });
    if (asked !== latest) return; // a newer refresh is on its way
    if (!reply.ok || reply.redirected) {
      window.location.reload();
      return;
    }
    const parsed = new DOMParser().parseFromString(await reply.text(), "text/html");
    region.replaceChildren(...parsed.body.childNodes);
    region.dataset.updated = String(asked);
  };
  const source = new EventSource(region.dataset.liveEvents);
  source.addEventListener("events", refresh);
  source.addEventListener("error", (event) => {
    // An "error" event with data is the server ending the watch (e.g. the credentials
    // were revoked): reload, which shows the sign-in page if the session is gone.
    if (event.data) {
      source.close();
      window.location.reload();
    }
  });
}
