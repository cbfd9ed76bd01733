"""An OpenAI-compatible chat-completions endpoint (the OpenRouter stand-in).

Served at ``/v1/chat/completions`` and at OpenRouter's ``/api/v1/chat/completions`` so either ``base_url``
style works with the real ``openai`` SDK.  Answers are deterministic: a small rule set classifies the last
user message as yes / no / unclear (what the orchestrator's LLM seam asks for), or echoes a short draft.
It requires a Bearer token like the real service and can be made to fail through ``/sandbox/faults``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.world import World

_YES = re.compile(r"\b(да|ага|конечно|yes|yep|sure|ok|ок|согласен|согласна)\b", re.IGNORECASE)
_NO = re.compile(r"\b(нет|no|nope|не\s+буду|не\s+могу|отказываюсь)\b", re.IGNORECASE)


def classify(text: str) -> str:
    yes, no = bool(_YES.search(text)), bool(_NO.search(text))
    if yes == no:
        return "unclear"
    return "yes" if yes else "no"


def install(app: FastAPI, world: World) -> None:
    calls: list[dict[str, Any]] = []

    async def completions(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return JSONResponse({"error": {"message": "missing bearer token", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, status_code=401)
        try:
            body = await request.json()
            messages = body["messages"]
            last_user = next(m["content"] for m in reversed(messages) if m.get("role") == "user")
        except (ValueError, KeyError, StopIteration, TypeError):
            return JSONResponse({"error": {"message": "messages with a user turn are required",
                                           "type": "invalid_request_error"}}, status_code=400)
        label = classify(str(last_user))
        wants_json = (body.get("response_format") or {}).get("type") == "json_object"
        content = json.dumps({"label": label}) if wants_json else label
        with world.lock:
            calls.append({"ts": time.time(), "model": body.get("model"), "label": label})
        return JSONResponse({
            "id": f"chatcmpl-{world.next_id(19)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "sandbox/deterministic",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(str(messages)) // 4, "completion_tokens": 3,
                      "total_tokens": len(str(messages)) // 4 + 3},
        })

    app.add_api_route("/v1/chat/completions", completions, methods=["POST"])
    app.add_api_route("/api/v1/chat/completions", completions, methods=["POST"])

    @app.get("/sandbox/llm/calls")
    def llm_calls() -> dict[str, Any]:
        with world.lock:
            return {"calls": list(calls)}
