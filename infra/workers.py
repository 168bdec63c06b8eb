"""The GPU workers a stack runs, in one table: per worker (a RunPod endpoint), the image it runs
and the env that makes that image this worker. The images, with their Dockerfiles."""

from dataclasses import dataclass, field

IMAGES = {  # image -> its Dockerfile (each beside a Dockerfile.dockerignore: its build context)
    "api": "app/Dockerfile",
    "llm": "gpu_worker/llm/Dockerfile",
    "clip": "gpu_worker/clip/Dockerfile",
}


@dataclass(frozen=True)
class Worker:
    image: str  # a key of IMAGES
    env: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def endpoint_variable(name: str) -> str:
        """The API's env variable holding worker `name`'s endpoint id (e.g. LLM_ENDPOINT_ID)."""
        return f"{name.upper()}_ENDPOINT_ID"


WORKERS = {
    "llm": Worker("llm", {"TASK": "generate"}),
    "embed": Worker("llm", {"TASK": "embed"}),  # text embeddings: the llm image, another task
    "clip": Worker("clip"),
}
GPU_IMAGES = sorted({worker.image for worker in WORKERS.values()})
