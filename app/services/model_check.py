"""What a deployment checks before it makes anything at RunPod: the model exists and may be read
(gated models need a token), a worker serves it for the task (the llm worker an architecture
vLLM runs; the imagegen worker a diffusers repository of a family it knows: `model_index.json`
names its pipeline), and which of the allowed GPU pools is the smallest that holds it. Hub
models are read through `huggingface_hub` (HF_ENDPOINT in tests: a fake Hub); a local model
directory is read as is. The API's request path may take the Hub's answer of the last RECENT_S
seconds (a model many deploy costs one Hub round trip, not one per request); the runner always
asks again."""

import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2  # huggingface_hub's HTTP client (its own fork of httpx)
from cachetools import TTLCache, cached
from cachetools.keys import hashkey
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
)

from runpod_api import catalog

# Architectures the llm worker (vLLM) serves, per task (tests check them against vLLM's own
# registry, so none is listed that vLLM lacks).
ARCHITECTURES = {
    "generate": frozenset(
        {
            "LlamaForCausalLM",
            "MistralForCausalLM",
            "MixtralForCausalLM",
            "Qwen2ForCausalLM",
            "Qwen3ForCausalLM",
            "GemmaForCausalLM",
            "Gemma2ForCausalLM",
            "Phi3ForCausalLM",
        }
    ),
    "embed": frozenset({"BertModel", "XLMRobertaModel", "RobertaModel", "NomicBertModel"}),
}
# Diffusers pipelines the imagegen worker serves (gpu_worker.imagegen.pipeline's families, which
# the API image does not hold; a test holds the two the same).
PIPELINES = frozenset({"FluxPipeline", "StableDiffusionXLPipeline", "StableDiffusionPipeline"})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
HALF_VARIANTS = (".fp16.", ".bf16.")  # a diffusers component's half-precision copy
# Room beyond the weights: activations, the CUDA context and a KV cache worth having.
OVERHEAD = 1.2
HEADROOM_GB = 2.0
HUB_TIMEOUT_S = 10.0
RECENT_S = 300  # how long the request path trusts a Hub answer (refusals are never kept)


class ModelRefused(Exception):
    """The model cannot be deployed; the message says why and what to do."""


class HubUnreachable(Exception):
    """The Hub did not answer (a network failure): worth another try."""


@dataclass(frozen=True)
class ModelFacts:
    architectures: tuple[str, ...]
    weight_bytes: int  # what the worker loads (a diffusers pipeline: in half precision)
    pipeline: str | None = None  # a diffusers repository's pipeline class

    @property
    def task(self) -> str:
        """The task the model is for when a request names none."""
        if self.pipeline is not None:
            return "image"
        return "embed" if ARCHITECTURES["embed"].intersection(self.architectures) else "generate"


def diffusers_weight_bytes(files: dict[str, int]) -> int:
    """The weights a diffusers pipeline loads in half precision, from its files (path: size):
    each component folder's half-precision copy where it has one, else its safetensors, else
    its other weights; the repository's single-file checkpoints at its root are not loaded."""
    components: dict[str, dict[str, int]] = {}
    for path, size in files.items():
        folder, _, name = path.rpartition("/")
        if folder and name.endswith(WEIGHT_SUFFIXES):
            components.setdefault(folder, {})[name] = size
    total = 0
    for weights in components.values():
        half = [size for name, size in weights.items() if any(v in name for v in HALF_VARIANTS)]
        full = {n: s for n, s in weights.items() if not any(v in n for v in HALF_VARIANTS)}
        safetensors = [size for name, size in full.items() if name.endswith(".safetensors")]
        total += sum(half or safetensors or full.values())
    return total


def check_model(
    model: str,
    task: str | None,
    token: str | None,
    hub_endpoint: str | None,
    gpus: list[dict[str, Any]],
    allowed: list[str],
    asked: str | None,
    timeout_s: float = HUB_TIMEOUT_S,
    recent: bool = False,
) -> tuple[ModelFacts, str]:
    """The model's facts and the pool it is to run on, for `task` (None: the model's own)
    (one Hub request, a gated model's two, a diffusers repository's one more; none if `recent`
    and the Hub said the same token may read it in the last RECENT_S seconds); ModelRefused
    says why it cannot be deployed."""
    facts = model_facts(model, token, hub_endpoint, timeout_s, recent)
    check_architecture(facts, task or facts.task, model)
    return facts, choose_gpu(facts, gpus, allowed, asked)


def model_facts(
    model: str,
    token: str | None,
    hub_endpoint: str | None,
    timeout_s: float = HUB_TIMEOUT_S,
    recent: bool = False,
) -> ModelFacts:
    """The model's architectures and the size of its weights, from its directory or the Hub
    (with `recent`, from its answer to the same model and token in the last RECENT_S seconds
    when there is one)."""
    directory = Path(model)
    if directory.is_absolute():
        return _directory_facts(directory)
    if recent:
        return _recent_hub_facts(model, token, hub_endpoint, timeout_s)
    return _hub_facts(model, token, hub_endpoint, timeout_s)


@cached(  # a refusal is an exception: never kept
    TTLCache(maxsize=4096, ttl=RECENT_S),
    key=lambda model, token, hub_endpoint, _timeout_s: hashkey(model, token, hub_endpoint),
    lock=threading.Lock(),
)
def _recent_hub_facts(
    model: str, token: str | None, hub_endpoint: str | None, timeout_s: float
) -> ModelFacts:
    return _hub_facts(model, token, hub_endpoint, timeout_s)


def _hub_facts(
    model: str, token: str | None, hub_endpoint: str | None, timeout_s: float
) -> ModelFacts:
    api = HfApi(endpoint=hub_endpoint, token=token or False)
    try:
        info = api.model_info(model, files_metadata=True, timeout=timeout_s)
        if info.gated and not token:
            raise ModelRefused(f"{model} is gated on the Hugging Face Hub: give an hf_token")
        if info.gated:
            api.auth_check(model)
    except GatedRepoError:  # before its base class, RepositoryNotFoundError
        raise ModelRefused(
            f"the hf_token given may not read {model}: accept its terms on the Hub first"
        ) from None
    except RepositoryNotFoundError:
        raise ModelRefused(f"no model {model!r} on the Hugging Face Hub") from None
    except HFValidationError as exc:  # before any request: not a shape the Hub has
        raise ModelRefused(f"{model!r} is not a Hugging Face model id: {exc}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        if status >= 500:
            raise HubUnreachable(f"the Hugging Face Hub answered {status}") from None
        raise ModelRefused(f"the Hugging Face Hub refused {model}: {status}") from None
    except httpx2.TransportError as exc:
        raise HubUnreachable(f"the Hugging Face Hub cannot be reached: {exc!r}") from None
    files = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or ()}
    if "model_index.json" in files:
        index = _hub_file(api, model, "model_index.json", timeout_s)
        return ModelFacts((), diffusers_weight_bytes(files), _pipeline(index, model))
    architectures = tuple((info.config or {}).get("architectures") or ())
    sizes = [size for name, size in files.items() if name.endswith(WEIGHT_SUFFIXES)]
    return ModelFacts(architectures, sum(sizes))


def _hub_file(api: HfApi, model: str, filename: str, timeout_s: float) -> str:
    """A small file of the model's repository, as text."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    url = hf_hub_url(model, filename, endpoint=api.endpoint)
    try:
        response = get_session().get(url, headers=build_hf_headers(token=api.token),
                                     timeout=timeout_s, follow_redirects=True)  # fmt: skip
    except httpx2.TransportError as exc:
        raise HubUnreachable(f"the Hugging Face Hub cannot be reached: {exc!r}") from None
    if response.status_code >= 500:
        raise HubUnreachable(f"the Hugging Face Hub answered {response.status_code}")
    if response.status_code != 200:
        raise ModelRefused(
            f"the Hugging Face Hub refused {model}/{filename}: {response.status_code}"
        )
    return response.text


def _pipeline(index: str, model: str) -> str:
    """The pipeline class a diffusers repository's model_index.json names."""
    try:
        name = json.loads(index).get("_class_name")
    except (ValueError, AttributeError):
        name = None
    if not isinstance(name, str):
        raise ModelRefused(f"{model}'s model_index.json names no pipeline (_class_name)")
    return name


def _directory_facts(directory: Path) -> ModelFacts:
    diffusers = False
    with contextlib.suppress(OSError):  # a name too long, say: read below, and refused there
        diffusers = (directory / "model_index.json").is_file()
    if diffusers:
        try:
            index = (directory / "model_index.json").read_text()
            files = {
                p.relative_to(directory).as_posix(): p.stat().st_size
                for p in directory.rglob("*")
                if p.is_file()
            }
        except OSError as exc:
            raise ModelRefused(f"{directory} cannot be read: {exc.strerror or exc}") from None
        return ModelFacts((), diffusers_weight_bytes(files), _pipeline(index, str(directory)))
    try:
        config = json.loads((directory / "config.json").read_text())
        weights = [
            p.stat().st_size for p in directory.rglob("*") if p.name.endswith(WEIGHT_SUFFIXES)
        ]
    except (FileNotFoundError, NotADirectoryError):
        raise ModelRefused(
            f"{directory} is not a model directory: it has no config.json or model_index.json"
        ) from None
    except OSError as exc:
        raise ModelRefused(f"{directory} cannot be read: {exc.strerror or exc}") from None
    except ValueError:  # not JSON, not text
        raise ModelRefused(f"{directory}/config.json is not JSON") from None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list):
        architectures = []
    return ModelFacts(tuple(map(str, architectures)), sum(weights))


def check_architecture(facts: ModelFacts, task: str, model: str) -> None:
    if facts.pipeline is not None or task == "image":
        _check_pipeline(facts, task, model)
        return
    served = ARCHITECTURES[task]
    if not served.intersection(facts.architectures):
        found = ", ".join(facts.architectures) or "none"
        raise ModelRefused(
            f"{model} has architecture {found}; the worker serves {task} with "
            f"{', '.join(sorted(served))}"
        )


def _check_pipeline(facts: ModelFacts, task: str, model: str) -> None:
    if facts.pipeline is None:
        raise ModelRefused(
            f"{model} is not a diffusers repository (it has no model_index.json): task image "
            f"serves the pipelines {', '.join(sorted(PIPELINES))}"
        )
    if task != "image":
        raise ModelRefused(f"{model} is a diffusers {facts.pipeline}: deploy it with task image")
    if facts.pipeline not in PIPELINES:
        raise ModelRefused(
            f"{model} is a diffusers {facts.pipeline}; the imagegen worker serves "
            f"{', '.join(sorted(PIPELINES))}"
        )


class NoCapacity(ModelRefused):
    """Pools that hold the model are allowed, but RunPod has none of their GPUs free now."""


def choose_gpu(
    facts: ModelFacts, gpus: list[dict[str, Any]], allowed: list[str], asked: str | None
) -> str:
    """The serverless pool to run the model on: of the `allowed` pools (RunPod's catalog `gpus`
    read in the user's words, runpod_api.catalog) those the one `asked` for narrows them to (a
    pool, a GPU type or a size such as 24gb), the ones whose cards hold the model, available
    first, then the smallest. NoCapacity when every one that fits is out of stock."""
    need_gb = facts.weight_bytes * OVERHEAD / 1e9 + HEADROOM_GB
    selection = catalog.select(allowed, gpus)
    candidates = selection
    if asked is not None:
        narrowed = catalog.select([asked], gpus)
        candidates = catalog.Selection(
            [pool for pool in selection.pools if pool in narrowed.pools],
            sorted(set(selection.excluded_types) | set(narrowed.excluded_types)),
        )
    fitting = catalog.fitting(candidates, gpus, need_gb)
    if fitting:
        pool, types = fitting[0]
        if not catalog.has_capacity(types):
            names = ", ".join(pool for pool, _ in fitting)
            raise NoCapacity(f"RunPod has no GPU free in the pools that hold the model ({names})")
        return pool
    needs = f"the model needs about {need_gb:.0f} GB of GPU memory"
    if asked is not None and (smallest := catalog.fitting(selection, gpus, need_gb)):
        pool, types = min(smallest, key=lambda found: catalog.pool_memory(found[1]))
        memory = catalog.pool_memory(types)
        raise ModelRefused(
            f"{needs}: {asked} is too small; the smallest allowed GPU pool that holds it is "
            f"{pool} ({memory} GB: gpu_tier {memory}gb)"
        )
    raise ModelRefused(f"{needs} and no allowed GPU has it (allowed: {', '.join(allowed)})")
