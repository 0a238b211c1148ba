// Keeps a console region current while the page is open: every element with
// data-live-events listens to that Server-Sent Events stream (WatchSettings through the
// gateway) and, on each change, fetches data-live-src (the same region, rendered by the
// server) and swaps it in. No value is ever built into HTML here: the server renders and
// escapes, this only moves its nodes. If the session has ended, the fetch lands on the
// sign-in page, and the page is reloaded to show it.
"use strict";

const shownRevision = (region) =>
  Number(region.querySelector("[data-revision]")?.dataset.revision ?? 0);

for (const region of document.querySelectorAll("[data-live-events]")) {
  let latest = 0;
  let retry = 2000;
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
    region.dataset.refreshes = String(asked);
  };
  const connect = () => {
    const source = new EventSource(region.dataset.liveEvents);
    // The first message of a new watch is a snapshot at the current revision: anything
    // newer than what the page shows changed between its rendering and now.
    source.addEventListener("snapshot", (event) => {
      if (JSON.parse(event.data).revision > shownRevision(region)) refresh();
    });
    source.addEventListener("events", refresh);
    source.addEventListener("error", (event) => {
      if (event.data) {
        // The server ended the watch (e.g. the credentials were revoked): reload, which
        // shows the sign-in page if the session is gone.
        source.close();
        window.location.reload();
      } else if (source.readyState === EventSource.CLOSED) {
        // Refused outright (EventSource gives up on an HTTP error, or a 204 when there
        // was nothing to watch): start a new watch, less and less often.
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 60000);
      }
    });
    region.dataset.live = "connecting";
    source.addEventListener("open", () => {
      region.dataset.live = "open";
      retry = 2000;
    });
  };
  connect();
}
