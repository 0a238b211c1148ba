"""Live pages: the matrix follows WatchSettings through the gateway's event stream.

``GET /console/{kind}/{id}/events`` is the same ``text/event-stream`` as the REST watch
paths (sse.py: one event per message, its id the revision, so the browser's EventSource
resumes with ``Last-Event-ID`` when the gateway ends a stream after
TIERSET_GATEWAY_WATCH_SECONDS), authenticated by the session cookie instead of an
Authorization header (the page's script cannot read the token, by design). It watches
the matrix's prefix when the page is filtered (so keys added under it appear), else the
keys of the matrix page. static/live.js hears each change and fetches the matrix again
(``.../matrix``, server-rendered like the page), so what it shows is always what the
server resolves, escaped by the same templates.
"""

from __future__ import annotations

from starlette.responses import Response

from tierset.gateway import sse
from tierset.gateway.calls import backend
from tierset.gateway.console.pages import Visit, place, signed_in_page
from tierset.gateway.console.views import MATRIX_PAGE
from tierset.v1 import settings_pb2


@signed_in_page
async def events(visit: Visit) -> Response:
    """GET .../events?prefix=P&page=T: the matrix page's changes as Server-Sent Events."""
    here = await place(visit)
    prefix = visit.request.query_params.get("prefix", "")
    message = settings_pb2.WatchSettingsRequest(
        scope=here.scope, start_revision=sse.start_revision(visit.request)
    )
    if prefix:
        message.key_prefix = prefix
    else:
        listing = settings_pb2.ListSettingsRequest(
            scope=here.scope,
            page_size=MATRIX_PAGE,
            page_token=visit.request.query_params.get("page", ""),
        )
        listed = await backend(visit.request).settings.ListSettings(
            listing, **visit.options(listing)
        )
        message.keys.extend(setting.key for setting in listed.settings)
        if not message.keys:
            # Nothing to watch; 204 tells EventSource not to reconnect.
            return Response(status_code=204)
    return await sse.event_stream(visit.request, message, visit.options(message))
