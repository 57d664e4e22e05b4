"""From an exchange to the client: one JSON body, or an SSE stream written chunk by chunk.

Backpressure comes from awaiting each write. A client that goes away cancels the handler
(the server runs with ``handler_cancellation``); leaving the ``async with`` then releases the
upstream at once and settles the call. The response is prepared at the first chunk, so a
stream that fails before producing anything still gets an ordinary error response.
"""

from __future__ import annotations

from aiohttp import web

from nitroproxy.core import sse
from nitroproxy.proxy.call import Call
from nitroproxy.web.appkeys import GATEWAY


async def relay(request: web.Request, call: Call) -> web.StreamResponse:
    async with request.app[GATEWAY].exchange(call) as ex:
        if not ex.streaming:
            return web.Response(
                body=ex.body, status=ex.status, content_type="application/json", headers=ex.headers
            )
        response = web.StreamResponse(status=200)
        async for chunk in ex:
            if not response.prepared:
                response.headers.update({**sse.HEADERS, **ex.headers})
                await response.prepare(request)
            await response.write(chunk)
        if not response.prepared:  # a stream with nothing to say (never, by the exchange)
            response.headers.update({**sse.HEADERS, **ex.headers})
            await response.prepare(request)
        return response
