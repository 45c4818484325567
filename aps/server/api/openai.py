"""OpenAI-compatible routes: completions, chat completions (with SSE streaming), models."""
from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Header, Request as HttpRequest
from fastapi.responses import JSONResponse, StreamingResponse

from aps.core import Request, Status
from aps.engines.upstream_http import UpstreamCall
from aps.server.api.client import MAX_QUEUE_HEADER, disconnected, max_queue_s
from aps.server.api.schemas import ChatBody, CompletionBody
from aps.server.errors import ApiError, error_type
from aps.server.gateway import Ask, ended_error

router = APIRouter(prefix="/v1")

DEFAULT_MAX_TOKENS = {"completion": 16, "chat": 256}  # OpenAI's completions default is 16


class EventStream(StreamingResponse):
    """Server-sent events, written as `_sse` yields them. Starlette's class also runs a task
    (in a task group, per response) that waits for the client to go away; `_sse` has such a
    watcher already, one that cancels the request, so this class leaves that out."""

    async def __call__(self, scope, receive, send) -> None:
        await self.stream_response(send)  # after a disconnect, uvicorn drops what is sent


def _usage(req: Request) -> dict:
    return {"prompt_tokens": req.prompt_tokens, "completion_tokens": req.num_output_tokens,
            "total_tokens": req.prompt_tokens + req.num_output_tokens}


def _finish_reason(req: Request) -> str:
    return "length" if req.num_output_tokens >= req.max_tokens else "stop"


@router.get("/models")
async def models(http: HttpRequest, authorization: str | None = Header(None)):
    gw = http.app.state.gateway
    gw.caller(authorization)
    return {"object": "list", "data": [{"id": name, "object": "model",
                                        "created": int(gw.started), "owned_by": "aps"}
                                       for name in gw.models]}


@router.post("/completions")
async def completions(body: CompletionBody, http: HttpRequest,
                      authorization: str | None = Header(None)):
    prompt = body.prompt if isinstance(body.prompt, str) else "".join(body.prompt)
    return await _generate(http, authorization, body, prompt, chat=False)


@router.post("/chat/completions")
async def chat_completions(body: ChatBody, http: HttpRequest,
                           authorization: str | None = Header(None)):
    prompt = "\n".join(f"{m.role}: {m.text()}" for m in body.messages)
    return await _generate(http, authorization, body, prompt, chat=True)


async def _generate(http: HttpRequest, authorization, body, prompt: str, chat: bool):
    if body.n is not None and body.n != 1:  # one choice per request: say so, never drop some
        raise ApiError(400, f"only n=1 is supported (got n={body.n}): send one request per "
                            "choice", "invalid_request", param="n")
    gw = http.app.state.gateway
    caller = gw.caller(authorization)
    kind = "chat" if chat else "completion"
    ask = Ask(prompt, body.limit(DEFAULT_MAX_TOKENS[kind]), body.priority, body.model,
              max_queue_s(http.headers.get(MAX_QUEUE_HEADER)), "chatcmpl" if chat else "cmpl",
              UpstreamCall(chat, body.model_dump(exclude_unset=True), prompt))
    req, stream = await gw.submit(caller, ask)
    model = body.model or req.model  # the name the client used (an alias stays an alias)
    headers = {"x-aps-priority": str(req.bid)}  # the priority applied, after the caps
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventStream(_sse(gw, http, req, stream, model, chat, usage),
                                 media_type="text/event-stream", headers=headers)
    text = await gw.collect(http, req, stream)
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": _finish_reason(req), "logprobs": None}
    else:
        choice = {"index": 0, "text": text, "finish_reason": _finish_reason(req), "logprobs": None}
    return JSONResponse({"id": req.request_id,
                         "object": "chat.completion" if chat else "text_completion",
                         "created": int(time.time()), "model": model, "choices": [choice],
                         "usage": _usage(req)}, headers=headers)


async def _sse(gw, http: HttpRequest, req: Request, stream, model: str, chat: bool,
               include_usage: bool):
    """Server-sent events in OpenAI's chunk format, ending in `data: [DONE]`.

    A client that goes away cancels the request: a watcher waits for the disconnect message
    (whether the server notices a failed write depends on the HTTP implementation uvicorn uses).
    """
    watcher = asyncio.ensure_future(disconnected(http))
    watcher.add_done_callback(lambda t: t.cancelled() or gw.driver.cancel(req.request_id))
    base = {"id": req.request_id, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model}

    def event(choices: list, **extra) -> str:
        return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n"

    def piece(text: str | None, finish: str | None, first: bool = False) -> dict:
        if chat:
            delta = {"role": "assistant", "content": text or ""} if first else \
                ({"content": text} if text is not None else {})
            return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}

    # Token events differ only in their text: encode the rest once (the hot path of streaming).
    head, _, tail = event([piece("\0", None)]).partition(json.dumps("\0"))

    def token(text: str) -> str:
        return head + json.dumps(text) + tail

    try:
        first, out = True, []
        async for texts in stream.batches():  # what came together is written together
            for text in texts:
                out.append(event([piece(text, None, True)]) if first else token(text))
                first = False
            if not stream.done.is_set():  # else these go out with the end, in one write
                yield "".join(out)
                out.clear()
        await gw.recorded(req)  # its usage row is written before its last event
        if req.status is not Status.FINISHED:  # the same error a plain request would get
            err = ended_error(req, stream.error, gw.queue_wait_s())
            error = {"message": err.message, "type": error_type(err.status), "param": None,
                     "code": err.code}
            out.append(f"data: {json.dumps({'error': error})}\n\n")
        else:
            out.append(event([piece(None, _finish_reason(req), first)]))
            if include_usage:
                out.append(event([], usage=_usage(req)))
        out.append("data: [DONE]\n\n")
        yield "".join(out)
    finally:
        watcher.cancel()
        gw.driver.cancel(req.request_id)  # a no-op when it already ended
