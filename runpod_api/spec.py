"""RunPod's REST API v2 as published: rest-v2-openapi.json (RunPod's OpenAPI 3.1 spec) and
rest-v2-secrets-openapi.json (its account-secret pages, which that copy lacks, in the same form),
one document. Bodies are checked with a JSON Schema 2020-12 validator, the dialect of OpenAPI
3.1: the client checks what it sends, the local RunPod what it receives and what it answers."""

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

HERE = Path(__file__).parent
FILES = ("rest-v2-openapi.json", "rest-v2-secrets-openapi.json")
BASE = "urn:runpod-v2"


class SpecViolation(ValueError):
    """A body off the spec: `errors` names each field and what is wrong with it; `status` is
    what RunPod answers such a request (400 for an unknown field or a malformed body, 422 for a
    value of the wrong type, range or enum)."""

    def __init__(self, where: str, errors: list[str], status: int) -> None:
        self.errors = errors
        self.status = status
        super().__init__(f"{where}: {'; '.join(errors)}")


@cache
def document() -> dict[str, Any]:
    """Both files as one OpenAPI document."""
    merged: dict[str, Any] = {"paths": {}, "components": {"schemas": {}}}
    for name in FILES:
        part = json.loads((HERE / name).read_text())
        merged["paths"] |= part["paths"]
        for kind, items in part.get("components", {}).items():
            merged["components"].setdefault(kind, {}).update(items)
    return merged


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Registry().with_resource(BASE, resource)


@cache
def validator(schema: str) -> Draft202012Validator:
    """A validator of the spec's component schema `schema` (e.g. "CreateEndpointRequest")."""
    return Draft202012Validator(
        {"$ref": f"{BASE}#/components/schemas/{schema}"}, registry=_registry()
    )


@cache
def _at(pointer: str) -> Draft202012Validator:
    """A validator of the schema at JSON pointer `pointer` in the document (its `$ref`s resolve
    against the document)."""
    return Draft202012Validator({"$ref": f"{BASE}#{pointer}"}, registry=_registry())


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _described(error: Any) -> tuple[str, int]:
    """One validation error as `field: what is wrong`, and the status RunPod gives it."""
    path = ".".join(str(part) for part in error.absolute_path) or "body"
    if error.validator in ("unevaluatedProperties", "additionalProperties"):
        unknown = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        fields = [f"{path}.{name}" if path != "body" else name for name in unknown]
        return f"unknown field {', '.join(fields) or error.message}", 400
    if error.validator == "required":
        return f"{path}: {error.message}", 400
    return f"{path}: {error.message}", 422


def errors_of(v: Draft202012Validator, body: Any) -> tuple[list[str], int]:
    """What is wrong with `body` (nothing: an empty list) and the status for it. A field that
    fails makes its siblings "unevaluated" to JSON Schema, so unknown fields are reported only
    when nothing else is wrong, and then the innermost ones."""
    leaves = [leaf for error in v.iter_errors(body) for leaf in _leaves(error)]
    unknown = [
        e for e in leaves if e.validator in ("unevaluatedProperties", "additionalProperties")
    ]
    others = [e for e in leaves if e not in unknown]
    if not others and unknown:
        depth = max(len(e.absolute_path) for e in unknown)
        others = [e for e in unknown if len(e.absolute_path) == depth]
    found = [_described(error) for error in others]
    if not found:
        return [], 200
    messages = list(dict.fromkeys(message for message, _ in found))
    return messages, min(status for _, status in found)


def _leaves(error: Any) -> list[Any]:
    """The most specific errors under `error` (allOf/oneOf wrap the ones that name a field); of
    a oneOf, the branch the body meant: the one whose discriminator (an enum) it matches, then
    the one with the fewest errors."""
    if not error.context:
        return [error]
    if error.validator not in ("oneOf", "anyOf"):
        return [leaf for sub in error.context for leaf in _leaves(sub)]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def misses(errors: list[Any]) -> tuple[bool, int]:
        return any(e.validator in ("enum", "const") for e in errors), len(errors)

    return [leaf for sub in min(branches.values(), key=misses) for leaf in _leaves(sub)]


def check(schema: str, body: Any) -> None:
    """Raise SpecViolation when `body` is not a valid `schema`."""
    errors, status = errors_of(validator(schema), body)
    if errors:
        raise SpecViolation(schema, errors, status)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the spec's path, e.g. /v2/serverless/{id}
    spec: dict[str, Any]

    @property
    def pointer(self) -> str:
        return f"/paths/{_escape(self.template)}/{self.method.lower()}"

    def request_errors(self, body: Any) -> tuple[list[str], int]:
        content = self.spec.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            return [], 200
        return errors_of(_at(f"{self.pointer}/requestBody/content/application~1json/schema"), body)

    def response_errors(self, status: int, body: Any) -> list[str]:
        """What is wrong with an answer `status` + `body` (a JSON answer the spec does not list
        for this operation is wrong too)."""
        responses = self.spec["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            return [f"status {status} is not one the spec lists"]
        pointer = f"{self.pointer}/responses/{key}"
        answer = responses[key]
        if "$ref" in answer:
            pointer = answer["$ref"].removeprefix("#")
            answer = document()["components"]["responses"][pointer.rsplit("/", 1)[1]]
        media = next((m for m, c in (answer.get("content") or {}).items() if "schema" in c), None)
        if media is None:
            return [] if body is None else [f"status {status} has no body in the spec"]
        return errors_of(_at(f"{pointer}/content/{_escape(media)}/schema"), body)[0]


@cache
def _operations() -> list[tuple[re.Pattern[str], str, str]]:
    found = []
    for template, item in document()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        for method in item:
            if method != "parameters":
                found.append((pattern, method.upper(), template))
    # Literal paths before templated ones (/v2/registries/delegations before /v2/registries/{id}).
    return sorted(found, key=lambda entry: entry[2].count("{"))


def operation(method: str, path: str) -> Operation | None:
    """The spec's operation for `method` on `path`, None when the spec has none."""
    for pattern, verb, template in _operations():
        if verb == method and pattern.match(path):
            return Operation(verb, template, document()["paths"][template][method.lower()])
    return None


def path_exists(path: str) -> bool:
    return any(pattern.match(path) for pattern, _, _ in _operations())
