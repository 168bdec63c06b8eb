"""Which `/v1/chat/completions` calls are stored, and how. A call with `user` and the
`X-Conversation-Id` header (`new`, or the id of that user's conversation) is stored as a turn of
that conversation, like one of POST /v1/chat: the request's last message (the user's) and the
first choice's answer, after the model has answered. Without the header nothing is stored."""

import json
import time
import uuid
from typing import Any

from pydantic import ValidationError

from app.core.errors import OpenAIError
from app.schemas import ChatRequest

CONVERSATION_HEADER = "X-Conversation-Id"
OPENAI_NAMES = {"user_id": "user", "message": "messages"}  # ChatRequest's fields, as OpenAI's


def _text(content: Any) -> str | None:
    """A message's text: its content, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(part for part in parts if isinstance(part, str)) or None
    return None


def turn_request(body: dict[str, Any], conversation: str | None) -> ChatRequest | None:
    """The turn to store for an OpenAI chat request (None: nothing to store); raises a 400
    naming the field that stops it from being stored."""
    if conversation is None:
        return None
    if not isinstance(body.get("user"), str):
        message = f"user: a conversation ({CONVERSATION_HEADER}) belongs to a user; name it"
        raise OpenAIError(400, message, "user")
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    question = _text(last.get("content")) if isinstance(last, dict) else None
    if not isinstance(last, dict) or last.get("role") != "user" or question is None:
        message = "messages: a stored turn ends with the user's message, with text"
        raise OpenAIError(400, message, "messages")
    try:
        conversation_id = None if conversation == "new" else uuid.UUID(conversation)
    except ValueError as exc:
        message = f"{CONVERSATION_HEADER} must be `new` or a conversation's id"
        raise OpenAIError(400, message, CONVERSATION_HEADER) from exc
    try:  # the history is the request's own: the stored one is not read
        return ChatRequest(
            user_id=body["user"], message=question, conversation_id=conversation_id, history=[]
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = OPENAI_NAMES.get(str(error["loc"][0]), str(error["loc"][0]))
        raise OpenAIError(400, f"{field}: {error['msg']}", field) from exc


def answer_result(answer: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion as the result `save_turn` stores: its first choice's text."""
    message = (answer.get("choices") or [{}])[0].get("message") or {}
    return {
        "raw_text": message.get("content") or "",
        "model": answer.get("model"),
        "usage": answer.get("usage"),
    }


def completion(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A stored turn's answer as OpenAI's chat completion (what a retry of a streamed request
    is given back)."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["raw_text"]},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": result["usage"],
    }


def completion_events(answer: dict[str, Any]) -> list[str]:
    """A chat completion as the Server-Sent Events of its stream: its text, its end, [DONE]."""
    choice = answer["choices"][0]
    chunk = {key: answer[key] for key in ("id", "created", "model")}
    chunk["object"] = "chat.completion.chunk"
    deltas = [
        {"index": 0, "delta": choice["message"], "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason")},
    ]
    events = [chunk | {"choices": [delta]} for delta in deltas]
    events[-1]["usage"] = answer.get("usage")
    return [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]


class StreamedAnswer:
    """Reads OpenAI's Server-Sent Events as they pass, whatever pieces the text arrives in,
    and gathers the first choice's answer (and the usage, when the stream reports it).
    `failed`: the stream carried an error event (the answer is not whole)."""

    def __init__(self) -> None:
        self.failed = False
        self._pending = ""
        self._text: list[str] = []
        self._model: str | None = None
        self._usage: dict[str, Any] | None = None

    def events(self, text: str) -> list[str]:
        """The whole events `text` completes (each without its blank line), read."""
        *events, self._pending = (self._pending + text).split("\n\n")
        for event in events:
            data = event.removeprefix("data: ")
            if data != event and data != "[DONE]":
                try:
                    self._read(json.loads(data))
                except (ValueError, AttributeError):  # not a chunk: the answer is not known
                    self.failed = True
        return events

    def _read(self, chunk: dict[str, Any]) -> None:
        self.failed = self.failed or "error" in chunk
        self._model = chunk.get("model", self._model)
        self._usage = chunk.get("usage") or self._usage
        for choice in chunk.get("choices") or []:
            if choice.get("index") == 0:
                self._text.append((choice.get("delta") or {}).get("content") or "")

    def result(self) -> dict[str, Any]:
        """What `save_turn` stores."""
        return {"raw_text": "".join(self._text), "model": self._model, "usage": self._usage}
