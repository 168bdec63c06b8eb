"""Chat: load a conversation's context, ask the model, store both turns in one transaction.

This is the API's hot path: one autocommitted round trip reads the context and one writes
the turn, instead of ORM sessions with their BEGIN/COMMIT round trips.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.core.config import Settings
from app.core.db import autocommit
from app.core.errors import InvalidInput, NotFound, WorkerFailed
from app.inference.base import InferenceBackend
from app.models import Conversation, Message, TurnReplay
from app.schemas import NUL, ChatRequest, ChatResponse, RagOptions, Source, Usage
from app.services.search import search
from app.services.usage import USAGE_CTES, Meter

TITLE_CHARS = 80


async def get_conversation(
    session: AsyncSession, conversation_id: uuid.UUID, tenant: str
) -> Conversation:
    """The tenant's conversation (another tenant's is not found)."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.tenant != tenant:
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


def _context_query():
    """The conversation's owner with its last `limit` messages (one row each, or one row of
    NULLs when there are none): a single round trip. Built once; parameters are bound."""
    recent = (
        select(Message.id, Message.role, Message.content)
        .where(Message.conversation_id == Conversation.id)
        .order_by(Message.id.desc())
        .limit(bindparam("limit"))
        .lateral()
    )
    return (
        select(Conversation.user_id, recent.c.role, recent.c.content)
        .outerjoin(recent, true())
        .where(
            Conversation.id == bindparam("conversation_id"),
            Conversation.tenant == bindparam("tenant"),
        )
        .order_by(recent.c.id)
    )


_CONTEXT = _context_query()


async def prompt_messages(
    engine: AsyncEngine, request: ChatRequest, tenant: str, history_limit: int
) -> list[dict[str, str]]:
    """The messages to send to the model: the history (given, or the stored recent turns)
    followed by the new user message. Raises NotFound for a conversation that is not the
    tenant's and its user's."""
    history = [turn.model_dump() for turn in request.history or []]
    if request.conversation_id is not None:
        limit = 0 if request.history is not None else history_limit
        async with autocommit(engine) as conn:
            params = {"conversation_id": request.conversation_id, "tenant": tenant}
            params["limit"] = limit
            rows = (await conn.execute(_CONTEXT, params)).all()
        if not rows or rows[0].user_id != request.user_id:
            raise NotFound(f"conversation {request.conversation_id} not found")
        if request.history is None:
            history = [{"role": r.role, "content": r.content} for r in rows if r.role is not None]
    return [*history, {"role": "user", "content": request.message}]


def storable(model_text: str) -> str:
    """The model's text without NUL characters, which Postgres cannot store: a model may emit
    them, and the user is not to blame (their turn is kept, cleaned)."""
    return model_text.replace(NUL, "")


def job_input(request: ChatRequest, messages: list[dict[str, str]]) -> dict[str, Any]:
    """The llm worker's input. The worker fits the history to the model's context (it leaves
    out the oldest turns, never a system message or the new one) and without `max_tokens` uses
    its DEFAULT_MAX_TOKENS, shortened to what the context leaves after the prompt."""
    job = {
        "messages": messages,
        "temperature": request.temperature,
        "stream": request.stream,
        "fit_context": True,
    }
    if request.max_tokens is not None:
        job["max_tokens"] = request.max_tokens
    if request.response_format is not None:
        job["response_format"] = request.response_format.model_dump(by_alias=True)
    return job


# Both turns and the request's usage rows in one statement, so one round trip and one commit
# (the usage is written even when the conversation was deleted meanwhile). The CTE names the
# conversation: a new row, or the existing one updated, which locks it, so concurrent turns of
# one conversation are written one after another. Identities follow `ORDER BY turn.ord`:
# each question is stored right before its answer.
_TURN_INSERT = """
INSERT INTO messages (conversation_id, role, content, request_id, model_id, usage, sources)
SELECT conversation.id, turn.role, turn.content, :request_id, turn.model_id, turn.usage,
    turn.sources
FROM conversation, (VALUES
    (1, 'user', :question, NULL, NULL::jsonb, NULL::jsonb),
    (2, 'assistant', :answer, :model_id, CAST(:usage AS jsonb), CAST(:sources AS jsonb))
) AS turn (ord, role, content, model_id, usage, sources)
ORDER BY turn.ord
RETURNING conversation_id
"""
_NEW_CONVERSATION = text(
    "WITH conversation AS (INSERT INTO conversations (id, tenant, user_id, title)"  # noqa: S608
    " VALUES (:conversation_id, :tenant, :user_id, :title) RETURNING id), "
    + USAGE_CTES
    + _TURN_INSERT
)
_NEXT_TURN = text(
    "WITH conversation AS (UPDATE conversations SET updated_at = now()"  # noqa: S608
    " WHERE id = :conversation_id AND tenant = :tenant RETURNING id), " + USAGE_CTES + _TURN_INSERT
)


@dataclass(frozen=True)
class Replay:
    """A turn's Idempotency-Key: whose (the API key), the key, the hash of the request it was
    sent with, and the answer a retry gets (None: the stored turn, as POST /v1/chat gives it)."""

    key_id: uuid.UUID
    key: str
    request_hash: str
    answer: dict[str, Any] | None = None


class _Raced(Exception):
    """A request with the same Idempotency-Key stored its turn first."""


async def replayed_turn(
    engine: AsyncEngine, key_id: uuid.UUID, key: str | None, hashed: str
) -> tuple[uuid.UUID, dict[str, Any]] | None:
    """The conversation and the answer an earlier request with this Idempotency-Key stored
    (None: none did); 422 when that request was another one."""
    if key is None:
        return None
    query = select(TurnReplay.request_hash, TurnReplay.conversation_id, TurnReplay.answer).where(
        TurnReplay.api_key_id == key_id, TurnReplay.idempotency_key == key
    )
    async with autocommit(engine) as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    if row.request_hash != hashed:
        raise InvalidInput("this Idempotency-Key was used for a different request: use a new key")
    return row.conversation_id, row.answer


async def save_turn(
    engine: AsyncEngine,
    request: ChatRequest,
    result: dict[str, Any],
    request_id: str,
    tenant: str,
    history: int,
    sources: list[Source] | None = None,
    new_id: uuid.UUID | None = None,
    replay: Replay | None = None,
    meter: Meter | None = None,
) -> ChatResponse:
    """Store the user turn and the model's answer (with the sources it was given) together,
    after the model has answered; `history`: how many earlier messages were sent; `new_id`:
    the id of the conversation this turn starts, when the request names none (else a new
    one); `replay`: its Idempotency-Key, stored with it in one transaction (a request with the
    same key that stored first wins: its turn is the one answered); `meter`: the request's, whose
    held usage rows are written in the turn's statement."""
    answer = result.get("raw_text")
    if not isinstance(answer, str):
        raise WorkerFailed("worker result has no raw_text")
    answer = storable(answer)
    usage = Usage.model_validate(result.get("usage") or {})
    model_id = str(result.get("model", "unknown"))
    conversation_id = request.conversation_id or new_id or uuid.uuid4()
    statement = _NEXT_TURN if request.conversation_id else _NEW_CONVERSATION
    params = {
        "conversation_id": conversation_id,
        "tenant": tenant,
        "user_id": request.user_id,
        "title": request.message.strip()[:TITLE_CHARS],
        "request_id": request_id,
        "question": request.message,
        "answer": answer,
        "model_id": model_id,
        "usage": usage.model_dump_json(),
        "sources": None if sources is None else json.dumps(_dumped(sources)),
    }
    response = ChatResponse(
        assistant_message=answer,
        conversation_id=conversation_id,
        request_id=request_id,
        model_id=model_id,
        usage=usage,
        history_used=history - int(result.get("messages_dropped") or 0),
        sources=sources,
        parsed=_parsed(answer) if request.response_format is not None else None,
    )
    used = meter.take() if meter is not None else []
    params["usage_rows"] = json.dumps(used)
    try:
        if replay is None:
            async with autocommit(engine) as conn:
                stored = (await conn.execute(statement, params)).all()
        else:
            async with engine.begin() as conn:
                stored = (await conn.execute(statement, params)).all()
                if stored and not await _keep_replay(conn, replay, conversation_id, response):
                    raise _Raced
    except BaseException as exc:
        if meter is not None:  # not written with the turn: the writer writes them
            meter.give_back(used)
        if not isinstance(exc, _Raced) or replay is None:
            raise
        earlier = await replayed_turn(engine, replay.key_id, replay.key, replay.request_hash)
        assert earlier is not None  # the racer's, committed
        return ChatResponse.model_validate(earlier[1])
    if meter is not None and used:
        meter.written()
    if not stored:  # the conversation was deleted while the model was answering
        raise NotFound(f"conversation {conversation_id} not found")
    return response


async def _keep_replay(
    conn: AsyncConnection, replay: Replay, conversation_id: uuid.UUID, response: ChatResponse
) -> bool:
    """Keep the turn's answer under its key; False when the key is taken already."""
    taken = await conn.scalar(
        pg_insert(TurnReplay)
        .values(
            api_key_id=replay.key_id,
            idempotency_key=replay.key,
            request_hash=replay.request_hash,
            conversation_id=conversation_id,
            answer=replay.answer or response.model_dump(mode="json"),
        )
        .on_conflict_do_nothing()
        .returning(TurnReplay.conversation_id)
    )
    return taken is not None


def _parsed(answer: str) -> Any:
    """A structured answer's JSON; None when it is not whole (cut short by `max_tokens`)."""
    try:
        return json.loads(answer)
    except ValueError:
        return None


def _dumped(sources: list[Source]) -> list[dict[str, Any]]:
    return [source.model_dump(mode="json") for source in sources]


GROUNDING = (
    "Answer the user's question from the numbered sources below, citing the ones you use as "
    "[1], [2] and so on. If the sources do not hold the answer, say that they do not."
)


async def retrieve(
    engine: AsyncEngine,
    backend: InferenceBackend,
    settings: Settings,
    tenant: str,
    question: str,
    options: RagOptions,
    request_id: str,
) -> list[Source]:
    """The chunks of the tenant's documents to ground an answer in: the `k` nearest to the
    question scoring at least `min_score`."""
    hits = await search(
        engine, backend, settings, tenant, question, options.k, "text", None, request_id
    )
    return [
        Source(
            document_id=hit.document_id,
            source_id=hit.source_id,
            title=hit.title,
            chunk=hit.chunk or "",
            score=hit.score,
            chunk_metadata=hit.chunk_metadata,
        )
        for hit in hits
        if hit.score >= options.min_score
    ]


def grounded(messages: list[dict[str, str]], sources: list[Source]) -> list[dict[str, str]]:
    """`messages` led by a system message holding the sources (unchanged without sources)."""
    if not sources:
        return messages
    numbered = "\n\n".join(
        f"[{n}] {source.title}\n{source.chunk}" for n, source in enumerate(sources, 1)
    )
    return [{"role": "system", "content": f"{GROUNDING}\n\n{numbered}"}, *messages]
