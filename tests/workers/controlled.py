"""A worker the tests steer: the command in `input.command` (or the last chat message) says
what to do. `sleep: S` answers after S seconds, `fail: M` returns an error, `raise: M` raises,
`stream: N` streams N deltas; anything else is answered like the development worker."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gpu_worker.dev.handler import handle as dev_handle


def _command(job_input: dict[str, Any]) -> tuple[str, str]:
    text = job_input.get("command")
    if text is None and job_input.get("messages"):
        text = job_input["messages"][-1].get("content", "")
    verb, _, arg = str(text or "").partition(":")
    return verb.strip(), arg.strip()


async def handle(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    verb, arg = _command(job["input"])
    if verb == "sleep":
        await asyncio.sleep(float(arg))
        yield {"raw_text": f"slept {arg}", "finish_reason": "stop", "model": "controlled"}
    elif verb == "fail":
        yield {"error": arg, "request_id": job["id"]}
    elif verb == "raise":
        raise RuntimeError(arg)
    elif verb == "stream":
        for i in range(int(arg)):
            yield {"delta": f"t{i} "}
            await asyncio.sleep(0.05)
        yield {"raw_text": "streamed", "finish_reason": "stop", "model": "controlled"}
    else:
        async for chunk in dev_handle(job):
            yield chunk


if __name__ == "__main__":
    from gpu_worker.common.serve import serve
    from gpu_worker.common.settings import WorkerSettings

    serve(handle, WorkerSettings())
