"""How a worker tells the client's mistakes from its own failures.

A refusal of the job's input (a prompt longer than the model's context, an image that does not
decode) is the client's to fix: the API answers it 422, or 413 for a size limit. Anything else
a worker reports is a failure (502). The runpod SDK and RunPod keep only the text of a job's
error, so a refusal's text starts with its code in brackets: `[invalid_input] ...` or
`[input_too_large] ...`.
"""

import re
from typing import Any

from pydantic import ValidationError


class Refused(ValueError):
    """The job's input cannot be used; the message says what to fix."""

    code = "invalid_input"

    def report(self, request_id: Any) -> dict[str, Any]:
        """The job's error output."""
        return {"error": f"[{self.code}] {self}", "request_id": request_id}


class TooLarge(Refused):
    """The job's input is over a size limit."""

    code = "input_too_large"


_CODED = re.compile(rf"^\[({Refused.code}|{TooLarge.code})\] (.*)$", re.DOTALL)


def describe(exc: ValidationError) -> str:
    """A refusal's message for pydantic's first complaint about a job's input."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "input"
    return f"{field}: {error['msg'].removeprefix('Value error, ')}"


def refusal(error: str) -> tuple[str, str] | None:
    """(code, message) of a worker's error text when it is a refusal, else None."""
    match = _CODED.match(error)
    return (match.group(1), match.group(2)) if match else None


def request_id_of(job: dict[str, Any]) -> Any:
    """The id a job's answer carries: the API's request id, else RunPod's job id."""
    job_input = job.get("input")
    return (job_input.get("request_id") if isinstance(job_input, dict) else None) or job.get("id")


def input_object(job: dict[str, Any]) -> dict[str, Any]:
    """The job's input, refused unless it is an object."""
    job_input = job.get("input")
    if not isinstance(job_input, dict):
        raise Refused("input must be an object")
    return job_input
