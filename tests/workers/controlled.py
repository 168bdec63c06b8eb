"""A worker the tests steer, for the API's handling of what a real model cannot be made to do
on demand: the command in `input.command` (or the last chat message) says what to do.
`sleep: S` answers after S seconds, `fail: M` returns an error, `die: M` returns an error asking
for a fresh worker (as the llm worker does when its engine died), `pid:` answers its process id,
`raise: M` raises, `stream: N` streams N deltas, `getenv: NAME` answers the worker's variable
NAME (a template's env), `nul:` streams and answers text holding NUL characters (as a model
may); `break: N` streams N deltas (for an OpenAI job: chunks as OpenAI's events) and then
fails; anything else is echoed back (`echo: <message>`), so tests can check which answer was
stored next to which question. OpenAI's `/v1/models` lists the one model, `controlled`."""

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

MODEL = "controlled"


def _command(job_input: dict[str, Any]) -> str:
    job_input = job_input.get("openai_input", job_input)
    text = job_input.get("command")
    if text is None and job_input.get("messages"):
        text = job_input["messages"][-1].get("content", "")
    return str(text or "")


def _answer(text: str) -> dict[str, Any]:
    return {
        "raw_text": text,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split())},
        "model": MODEL,
    }


async def handle(job: dict[str, Any]) -> AsyncIterator[dict[str, Any] | str]:
    if job["input"].get("openai_route") == "/v1/models":
        yield {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]}
        return
    text = _command(job["input"])
    verb, _, arg = text.partition(":")
    verb, arg = verb.strip(), arg.strip()
    if verb == "sleep":
        await asyncio.sleep(float(arg))
        yield _answer(f"slept {arg}")
    elif verb == "fail":
        yield {"error": arg, "request_id": job["id"]}
    elif verb == "die":
        yield {"error": arg, "request_id": job["id"], "refresh_worker": True}
    elif verb == "pid":
        yield _answer(str(os.getpid()))
    elif verb == "raise":
        raise RuntimeError(arg)
    elif verb == "getenv":
        yield _answer(os.environ.get(arg, ""))
    elif verb == "nul":
        yield {"delta": "before\x00"}
        yield _answer("before\x00after\x00")
    elif verb == "break":
        for i in range(int(arg)):
            if "openai_route" not in job["input"]:  # a chat job's deltas
                yield {"delta": f"t{i} "}
                continue
            chunk = {"model": MODEL, "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield {"error": "the engine broke", "request_id": job["id"]}
    elif verb == "stream":
        for i in range(int(arg)):
            yield {"delta": f"t{i} "}
            await asyncio.sleep(0.05)
        yield _answer("streamed")
    else:
        yield _answer(f"echo: {text}")


class ControlledWorker:
    """`handle` as the local backend runs a worker (nothing to load)."""

    handle = staticmethod(handle)

    def load(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


if __name__ == "__main__":
    from gpu_worker.common.serve import serve
    from gpu_worker.common.settings import WorkerSettings

    serve(handle, WorkerSettings())
