"""`/v1/chat` with `response_format`: answers constrained to a JSON schema and returned parsed,
as a product does that runs a journey assistant on a GPU model (the real local workers)."""

import json

import jsonschema
import pytest

pytestmark = pytest.mark.vllm

STAGES = ["awareness", "consideration", "decision"]
PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
# Every answer of the journey assistant: where the user stands, how sure it is, and why.
JOURNEY = {
    "type": "object",
    "properties": {
        "stage_probs": {
            "type": "object",
            "properties": dict.fromkeys(STAGES, PROBABILITY),
            "required": STAGES,
            "additionalProperties": False,
        },
        "confidence": PROBABILITY,
        "coverage": PROBABILITY,
        "signals": {"type": "array", "items": {"enum": ["pricing", "demo", "docs"]}, "maxItems": 3},
    },
    "required": ["stage_probs", "confidence", "coverage", "signals"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "journey", "schema": JOURNEY}}


def journey_turn(**extra) -> dict:
    return {
        "user_id": "journey",
        "message": "I compared your plans and booked a demo.",
        "response_format": FORMAT,
        "temperature": 0,
        "max_tokens": 200,
        **extra,
    }


async def test_every_answer_parses_and_is_valid_in_its_schema(api):
    response = await api.post("/v1/chat", json=journey_turn())
    assert response.status_code == 200, response.text
    body = response.json()
    jsonschema.validate(body["parsed"], JOURNEY)
    assert json.loads(body["assistant_message"]) == body["parsed"]
    stored = (await api.get(f"/v1/conversations/{body['conversation_id']}")).json()
    assert stored["messages"][-1]["content"] == body["assistant_message"]


async def test_a_streamed_answer_is_parsed_in_its_done_event(api):
    response = await api.post("/v1/chat", json=journey_turn(stream=True))
    events = [e for e in response.text.split("\n\n") if e.startswith("event: done")]
    [done] = [json.loads(e.split("data: ", 1)[1]) for e in events]
    jsonschema.validate(done["parsed"], JOURNEY)


async def test_an_answer_cut_short_is_not_parsed(api):
    response = await api.post("/v1/chat", json=journey_turn(max_tokens=3))
    assert response.status_code == 200, response.text
    assert response.json()["parsed"] is None


@pytest.mark.parametrize(
    ("response_format", "status", "says"),
    [
        ({"type": "json_object"}, 422, "response_format.type"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, 422, "schema"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}, 422, "nonsense"),
    ],
)
async def test_a_format_that_cannot_be_used_is_refused_and_nothing_is_stored(
    api, response_format, status, says
):
    before = (await api.get("/v1/users/refused-format/conversations")).json()
    turn = journey_turn(user_id="refused-format", response_format=response_format)
    response = await api.post("/v1/chat", json=turn)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
    assert (await api.get("/v1/users/refused-format/conversations")).json() == before
