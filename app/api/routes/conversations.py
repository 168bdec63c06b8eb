"""Stored conversations (the caller's tenant's only): read, list, delete one, and erase a
user's."""

import uuid
from typing import Annotated

from fastapi import Path, Response
from sqlalchemy import delete, select

from app.api.deps import CallerDep, PageLimit, SessionDep, keyed_router
from app.models import Conversation, Message
from app.schemas import (
    ConversationList,
    ConversationOut,
    ConversationSummary,
    MessageOut,
    error_responses,
)
from app.services.chat import get_conversation

router = keyed_router(tags=["conversations"])


@router.get(
    "/conversations/{conversation_id}",
    summary="Read a conversation with its messages",
    responses=error_responses(404),
)
async def read_conversation(
    conversation_id: uuid.UUID, session: SessionDep, caller: CallerDep
) -> ConversationOut:
    conversation = await get_conversation(session, conversation_id, caller.tenant)
    messages = await session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    return ConversationOut(
        **ConversationSummary.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
    )


@router.get("/users/{user_id}/conversations", summary="List a user's conversations")
async def list_conversations(
    user_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: SessionDep,
    caller: CallerDep,
    limit: PageLimit = 50,
) -> ConversationList:
    rows = await session.scalars(
        select(Conversation)
        .where(Conversation.tenant == caller.tenant, Conversation.user_id == user_id)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(limit)
    )
    return ConversationList(conversations=[ConversationSummary.model_validate(c) for c in rows])


@router.delete(
    "/conversations/{conversation_id}",
    summary="Delete a conversation",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_conversation(
    conversation_id: uuid.UUID, session: SessionDep, caller: CallerDep
) -> None:
    """Deletes the conversation with its messages."""
    conversation = await get_conversation(session, conversation_id, caller.tenant)
    await session.delete(conversation)
    await session.commit()


@router.delete(
    "/users/{user_id}",
    summary="Erase everything held about a user",
    status_code=204,
    response_class=Response,
)
async def erase_user(
    user_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: SessionDep,
    caller: CallerDep,
) -> None:
    """Erases what the tenant holds of a user (a data subject's request): every conversation
    of theirs, with its messages. Nothing to erase is not an error."""
    await session.execute(
        delete(Conversation).where(
            Conversation.tenant == caller.tenant, Conversation.user_id == user_id
        )
    )
    await session.commit()
