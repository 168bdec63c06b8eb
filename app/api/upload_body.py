"""Reading an upload request: a multipart form (`file`, and optional `source_id`, `title`,
`metadata` as a JSON object) or a JSON body, into a checked `Upload`."""

import json
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.schemas import Metadata, SourceId, Strict, Title
from app.services.uploads import Upload, check_size

MAX_FIELDS = 8  # of a multipart upload, its file included


class FormFields(Strict):
    source_id: SourceId
    title: Title | None = None
    metadata: Metadata = Field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, json_text: bool = False) -> M:
    """`data` as `model`, or the API's 422 naming each bad field."""
    try:
        if json_text:
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def body_kind(request: Request, json_shape: str) -> str:
    """Whether the body is a form ("form") or JSON ("json"), from its Content-Type; 415 for
    anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return "form"
    if content_type == "application/json":
        return "json"
    raise UnsupportedMediaType(
        f"send multipart/form-data with a `file` field, or JSON {json_shape}"
    )


async def form_upload(request: Request, max_bytes: int) -> tuple[Upload, UploadFile]:
    """The form's file and fields as an Upload (content type as declared; the caller checks
    it), and the file part for its name and declared type."""
    try:
        form = await request.form(max_files=1, max_fields=MAX_FIELDS)
    except (MultiPartException, HTTPException) as exc:  # Starlette turns the first into a 400
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        if message.startswith("Too many"):  # files or fields: over a limit
            raise PayloadTooLarge(
                f"{message}: send one `file` and at most {MAX_FIELDS - 1} other fields"
            ) from None
        raise InvalidInput(f"malformed multipart body: {message}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput("send the file in a multipart field named `file`")
    # Text fields only: the form holds one file (a second is over the limit above).
    fields: dict[str, Any] = {
        name: value
        for name in ("source_id", "title", "metadata")
        if isinstance(value := form.get(name), str) and value
    }
    if "metadata" in fields:
        try:
            fields["metadata"] = json.loads(fields["metadata"])
        except ValueError:
            raise InvalidInput("metadata must be a JSON object") from None
    if "source_id" not in fields:  # the file's name, checked as a source_id
        if not file.filename:
            raise InvalidInput("give a source_id (the file has no name to use)")
        fields["source_id"] = file.filename
    checked = validated(FormFields, fields)
    data = await file.read()
    check_size(data, max_bytes)
    upload = Upload(
        checked.source_id, checked.title, file.content_type or "", data, checked.metadata
    )
    return upload, file


UPLOAD_MARK = "x-tandem-upload"  # in an upload route's OpenAPI: its body may be a file


def upload_paths(app: FastAPI) -> set[str]:
    """The paths of the upload routes (`upload_openapi`), which take the upload size limit."""
    return {
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and (route.openapi_extra or {}).get(UPLOAD_MARK)
    }


def upload_openapi(json_model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an upload route: the form, or `json_model` as JSON."""
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "source_id": {"type": "string", "description": "default: the file name"},
            "title": {"type": "string"},
            "metadata": {"type": "string", "description": "a JSON object"},
        },
    }
    return {
        UPLOAD_MARK: True,
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": json_model.model_json_schema()},
            },
        },
    }
