"""Chat: load a conversation's context, ask the model, store both turns in one transaction."""

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import NotFound, WorkerFailed
from app.models import Conversation, Message
from app.schemas import ChatRequest, ChatResponse, Usage

TITLE_CHARS = 80


async def get_conversation(session: AsyncSession, conversation_id: uuid.UUID) -> Conversation:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


async def prompt_messages(
    sessionmaker: async_sessionmaker, request: ChatRequest, history_limit: int
) -> list[dict[str, str]]:
    """The messages to send to the model: the history (given, or the stored recent turns)
    followed by the new user message. Raises NotFound for an unknown conversation."""
    history = [turn.model_dump() for turn in request.history or []]
    if request.conversation_id is not None:
        async with sessionmaker() as session:
            conversation = await get_conversation(session, request.conversation_id)
            if conversation.user_id != request.user_id:
                raise NotFound(f"conversation {request.conversation_id} not found")
            if request.history is None and history_limit:
                rows = await session.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation.id)
                    .order_by(Message.id.desc())
                    .limit(history_limit)
                )
                history = [{"role": m.role, "content": m.content} for m in reversed(rows.all())]
    return [*history, {"role": "user", "content": request.message}]


def job_input(
    request: ChatRequest, messages: list[dict[str, str]], default_max_tokens: int
) -> dict[str, Any]:
    return {
        "messages": messages,
        "max_tokens": request.max_tokens or default_max_tokens,
        "temperature": request.temperature,
        "stream": request.stream,
    }


async def save_turn(
    sessionmaker: async_sessionmaker,
    request: ChatRequest,
    result: dict[str, Any],
    request_id: str,
) -> ChatResponse:
    """Write the user turn and the model's answer together, after the model has answered.

    The conversation row is locked first, so concurrent turns of one conversation are
    written one after another and each question stays next to its answer."""
    answer = result.get("raw_text")
    if not isinstance(answer, str):
        raise WorkerFailed("worker result has no raw_text")
    usage = Usage.model_validate(result.get("usage") or {})
    model_id = str(result.get("model", "unknown"))
    async with sessionmaker.begin() as session:
        if request.conversation_id is None:
            conversation_id = uuid.uuid4()
            session.add(
                Conversation(
                    id=conversation_id,
                    user_id=request.user_id,
                    title=request.message.strip()[:TITLE_CHARS],
                )
            )
            await session.flush()
        else:
            conversation_id = request.conversation_id
            locked = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(updated_at=func.now())
                .returning(Conversation.id)
            )
            if locked.first() is None:  # deleted while the model was answering
                raise NotFound(f"conversation {conversation_id} not found")
        # The unit of work inserts rows in the order they were added: question, then answer.
        session.add_all(
            [
                Message(
                    conversation_id=conversation_id,
                    role="user",
                    content=request.message,
                    request_id=request_id,
                ),
                Message(
                    conversation_id=conversation_id,
                    role="assistant",
                    content=answer,
                    request_id=request_id,
                    model_id=model_id,
                    usage=usage.model_dump(),
                ),
            ]
        )
    return ChatResponse(
        assistant_message=answer,
        conversation_id=conversation_id,
        request_id=request_id,
        model_id=model_id,
        usage=usage,
    )
