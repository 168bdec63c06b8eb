"""The interface the API uses for inference, and the worker output contract both backends share.

Workers answer RunPod jobs. The llm worker's handler is an async generator: without `stream`
it yields one result; with `stream` it yields `{"delta": ...}` chunks and then the result.
RunPod aggregates what a generator yielded into a list, so an output is either a dict or a
list whose last item is the result. A dict with an `error` key is a failed job: a refusal of the
client's input (gpu_worker.common.refusal: 422, or 413 for a size limit), an OpenAI request's
error (its JSON body, with the status in `code`), or a worker failure (502).
"""

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from app.core.errors import ApiError, InputRefused, InputTooLarge, OpenAIError, WorkerFailed
from gpu_worker.common.refusal import refusal

MAX_ERROR_CHARS = 500


def worker_error_message(error: Any) -> str:
    """A worker's error, short and without the traceback the runpod SDK attaches to an
    exception (as a JSON report for plain handlers, as "handler: ... traceback: ..." text
    for generator handlers)."""
    if isinstance(error, str):
        try:
            report = json.loads(error)
        except ValueError:
            report = None
        if isinstance(report, dict) and "error_message" in report:
            error = report["error_message"]
        elif error.startswith("handler: ") and "\ntraceback:" in error:
            error = error.removeprefix("handler: ").split("\ntraceback:", 1)[0].strip()
    return str(error)[:MAX_ERROR_CHARS]


def openai_error(body: Any) -> OpenAIError | None:
    """The error of an OpenAI error body (`{"error": {message, param, code: status}}`), if it
    is one."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict) or not isinstance(detail.get("code"), int):
        return None
    param = detail.get("param")
    return OpenAIError(detail["code"], str(detail.get("message"))[:MAX_ERROR_CHARS], param)


def worker_error(error: Any) -> ApiError:
    """The API's error for a worker's: the client's (the worker refused its input or its
    OpenAI request) or the worker's own failure."""
    try:
        if (refused := openai_error(json.loads(error))) is not None:
            return refused
    except (TypeError, ValueError):
        pass
    message = worker_error_message(error)
    match refusal(message):
        case ("input_too_large", reason):
            return InputTooLarge(reason)
        case (_, reason):
            return InputRefused(reason)
    return WorkerFailed(f"worker error: {message}")


def final_output(output: Any) -> dict[str, Any]:
    """The result dict of a job's output; raises `worker_error` for an error output and
    WorkerFailed for a malformed one."""
    if isinstance(output, list) and output:
        output = output[-1]
    if not isinstance(output, dict):
        raise WorkerFailed(f"worker returned an unexpected output: {type(output).__name__}")
    if "error" in output:
        raise worker_error(output["error"])
    return output


@dataclass(frozen=True)
class QueuedJob:
    """Where a job sent with `submit` stands. `gone`: the backend no longer knows it (RunPod
    keeps results 30 minutes; the local backend forgets its jobs when it restarts)."""

    state: Literal["pending", "completed", "failed", "gone"]
    output: dict[str, Any] | None = None
    error: str | None = None
    # RunPod's delayTime and executionTime of a finished job (ms), for its usage row.
    delay_ms: float | None = None
    execution_ms: float | None = None

    @classmethod
    def finished(cls, output: Any) -> "QueuedJob":
        """A finished job's output as completed, or as failed when it is an error."""
        try:
            return cls("completed", final_output(output))
        except ApiError as exc:
            return cls("failed", error=exc.message)


class InferenceBackend(ABC):
    """Runs jobs on the workers, one per worker type (gpu_worker.common.worker_types): llm
    (chat), embed (text embeddings; the llm worker's embed task), clip (image and text
    embeddings in one space), transcribe (speech to text)."""

    @abstractmethod
    async def generate(self, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        """One chat completion: the llm worker's result dict."""

    @abstractmethod
    def generate_stream(
        self, job_input: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        """A chat completion as chunks: `{"delta": ...}` items, then the result dict."""

    @abstractmethod
    async def run(self, worker: str, job_input: dict[str, Any], request_id: str) -> dict[str, Any]:
        """One job on `worker` (a worker type's name), waited for: its result dict."""

    @abstractmethod
    async def openai(
        self, worker: str, route: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[str]:
        """An OpenAI request (`route`: "/v1/chat/completions", "/v1/completions",
        "/v1/embeddings" or "/v1/models") answered by `worker`'s OpenAI serving: the response
        body, or with `stream` the Server-Sent Events as text. Its errors raise OpenAIError."""

    async def models(self) -> list[dict[str, Any]]:
        """The model cards of the chat and text-embedding workers (OpenAI's /v1/models
        `data`): asked of the workers, which run here and wake nothing."""
        answers = [await self.openai(worker, "/v1/models", {}) for worker in ("llm", "embed")]
        return [card for answer in answers for card in answer["data"]]  # type: ignore[index]

    @abstractmethod
    async def submit(self, worker: str, job_input: dict[str, Any], webhook: str | None) -> str:
        """Queue a job on `worker` (a worker type's name) without waiting; its id. The
        backend POSTs the finished job to `webhook` when it can (RunPod does)."""

    @abstractmethod
    async def job_state(self, worker: str, job_id: str) -> QueuedJob:
        """Where a submitted job stands."""

    def endpoint(self, worker: str) -> str:
        """Where `worker`'s jobs run (its RunPod endpoint's id), as usage rows name it."""
        return f"local/{worker}"

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin whatever the backend needs before serving (the app's start-up calls it)."""

    def checks(self) -> dict[str, str]:
        """Readiness of each part this backend runs itself: name -> "ready" or why not."""
        return {}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients, connections and models."""
