"""The GPU worker types: the one place a type is declared.

A type is one RunPod endpoint of a stack (`tandem:gpu.<name>` in Pulumi.<stack>.yaml) running
one worker package (`gpu_worker/<package>`: its handler, `python -m gpu_worker.<package>`, its
Dockerfile and image). The API reaches it by the endpoint id in `<NAME>_ENDPOINT_ID` and, in
local mode, runs it in-process with the loader named here. Everything else (the Pulumi program,
the stack config, the API's backends, local mode, the tests' emulator) reads this table.

Adding a type: its package under gpu_worker/ (handler, settings, Dockerfile beside a
Dockerfile.dockerignore, requirements.txt), an entry here, its API settings (the endpoint id
and the local model) in app/core/config.py, its local loader in app/inference/local_models.py,
its extra in pyproject.toml and, for a stack that runs it, `gpu.<name>` in Pulumi.<stack>.yaml.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerType:
    name: str  # the endpoint: gpu.<name> in stack config, <NAME>_ENDPOINT_ID in the API
    package: str  # gpu_worker/<package>: its handler, Dockerfile and image
    description: str  # what it serves, in messages ("the CLIP model failed to load")
    # Builds the in-process worker from the API's Settings (module:function, imported lazily:
    # it imports the worker's engine).
    local_loader: str
    env: dict[str, str] = field(default_factory=dict)  # what makes the package this type
    required: bool = False  # every stack configures it
    # The API setting that names the model its answers carry, set from gpu.<name>.model.
    model_setting: str | None = None
    # It takes users' data: its jobs carry a signature it checks (gpu_worker.common.signing).
    signed: bool = False

    @property
    def module(self) -> str:
        """What `python -m` runs: the worker under the runpod SDK's job loop."""
        return f"gpu_worker.{self.package}"

    @property
    def dockerfile(self) -> str:
        return f"gpu_worker/{self.package}/Dockerfile"

    @property
    def endpoint_variable(self) -> str:
        """The API's variable holding the endpoint id (e.g. LLM_ENDPOINT_ID)."""
        return f"{self.name.upper()}_ENDPOINT_ID"


_LOCAL = "app.inference.local_models"
# In the order local mode loads them: chat first.
WORKER_TYPES: dict[str, WorkerType] = {
    worker.name: worker
    for worker in (
        WorkerType("llm", "llm", "chat", f"{_LOCAL}:chat_worker", {"TASK": "generate"}, True,
                   model_setting="LLM_MODEL"),
        WorkerType("clip", "clip", "CLIP", f"{_LOCAL}:clip_worker", required=True,
                   model_setting="CLIP_MODEL", signed=True),
        # Text embeddings for search: the llm image with another task.
        WorkerType("embed", "llm", "text-embedding", f"{_LOCAL}:text_embedding_worker",
                   {"TASK": "embed"}, model_setting="TEXT_EMBEDDING_MODEL"),
        WorkerType("transcribe", "transcribe", "speech-to-text",
                   f"{_LOCAL}:transcription_worker", model_setting="TRANSCRIBE_MODEL",
                   signed=True),
        WorkerType("imagegen", "imagegen", "image-generation", f"{_LOCAL}:image_generation_worker",
                   model_setting="IMAGEGEN_MODEL", signed=True),
    )
}  # fmt: skip
WORKER_PACKAGES = sorted({worker.package for worker in WORKER_TYPES.values()})
