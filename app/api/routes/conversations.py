"""Reading stored conversations."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from app.api.deps import ApiKeyDep, SessionDep
from app.models import Conversation, Message
from app.schemas import ConversationList, ConversationOut, ConversationSummary, MessageOut
from app.services.chat import get_conversation

router = APIRouter(prefix="/v1", tags=["conversations"])


@router.get("/conversations/{conversation_id}")
async def read_conversation(
    conversation_id: uuid.UUID, session: SessionDep, _key: ApiKeyDep
) -> ConversationOut:
    conversation = await get_conversation(session, conversation_id)
    messages = await session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    return ConversationOut(
        **ConversationSummary.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
    )


@router.get("/users/{user_id}/conversations")
async def list_conversations(
    user_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: SessionDep,
    _key: ApiKeyDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ConversationList:
    rows = await session.scalars(
        select(Conversation)
        .where(Conversation.user_id == user_id)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(limit)
    )
    return ConversationList(conversations=[ConversationSummary.model_validate(c) for c in rows])
