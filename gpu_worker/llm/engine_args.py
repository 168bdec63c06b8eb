"""vLLM's own arguments for the worker: its engine and its OpenAI serving, as `vllm serve` takes
them, from Tandem's settings and from the environment.

Any vLLM engine or OpenAI-serving argument can be set by its upper-snake-case name
(`ENABLE_PREFIX_CACHING=true`, `MAX_NUM_BATCHED_TOKENS=4096`, `TOOL_CALL_PARSER=hermes`,
`SPECULATIVE_CONFIG={"method": "ngram", ...}`), as worker-vllm's users do; vLLM's own parser
checks each, and a bad value stops the worker with the variable's name. What LlmSettings names
(MODEL_NAME, DTYPE, MAX_CONCURRENCY...) is set there, with Tandem's defaults; so is compact
JSON for structured outputs.
"""

import argparse
import dataclasses
import shlex
from collections.abc import Mapping

from vllm import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import BaseFrontendArgs, make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser

from gpu_worker.llm.settings import LlmSettings

# torch.distributed reads these itself; as vLLM flags they would mean something else.
NOT_FROM_ENV = {"MASTER_ADDR", "MASTER_PORT"}
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
# Structured outputs as compact JSON unless STRUCTURED_OUTPUTS_CONFIG says otherwise: no model
# can loop on whitespace (a small one answers `{\r\r\r...` until max_tokens), and no answer
# spends tokens on it. xgrammar is the backend that can (and vLLM's first choice).
COMPACT_JSON = {
    "STRUCTURED_OUTPUTS_CONFIG": '{"backend": "xgrammar", "disable_any_whitespace": true}'
}


class BadEngineArgument(ValueError):
    """An environment variable that vLLM refuses: the message names it."""


def vllm_names() -> set[str]:
    """The environment names of vLLM's engine and OpenAI-serving arguments (not its HTTP
    server's: the worker has none)."""
    fields = [*dataclasses.fields(AsyncEngineArgs), *dataclasses.fields(BaseFrontendArgs)]
    return {f.name.upper() for f in fields if not f.name.startswith("_")} - NOT_FROM_ENV


def _own_flags(settings: LlmSettings) -> list[str]:
    flags = [
        f"--model={settings.model_name}",
        f"--served-model-name={settings.model_id}",
        f"--runner={'pooling' if settings.task == 'embed' else 'generate'}",
        f"--dtype={settings.dtype}",
        f"--gpu-memory-utilization={settings.gpu_memory_utilization}",
        f"--tensor-parallel-size={settings.tensor_parallel_size}",
        f"--max-num-seqs={settings.max_concurrency}",
        "--enforce-eager" if settings.enforce_eager else "--no-enforce-eager",
    ]
    if settings.max_model_len is not None:
        flags.append(f"--max-model-len={settings.max_model_len}")
    if settings.quantization is not None:
        flags.append(f"--quantization={settings.quantization}")
    return flags


def _option(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def _env_flags(parser: argparse.ArgumentParser, name: str, value: str) -> list[str]:
    option = _option(name)
    action = parser._option_string_actions[option]
    if action.nargs == 0:  # a switch
        if value.lower() in TRUE:
            return [option]
        if value.lower() in FALSE:
            negated = "--no-" + option[2:]
            return [negated] if negated in parser._option_string_actions else []
        raise BadEngineArgument(f"{name}={value!r}: give true or false")
    if action.nargs in ("+", "*"):
        return [option, *shlex.split(value)]
    return [f"{option}={value}"]


def serve_args(settings: LlmSettings, environ: Mapping[str, str]) -> argparse.Namespace:
    """`vllm serve`'s arguments for `settings` and the vLLM arguments set in `environ`."""
    parser = make_arg_parser(FlexibleArgumentParser())
    parser.exit_on_error = False  # an invalid value raises ArgumentError instead of exiting
    own = {name.upper() for name in LlmSettings.model_fields}
    given = COMPACT_JSON | dict(environ)
    from_env = {name: given[name] for name in sorted(vllm_names() & given.keys() - own)}
    argv = _own_flags(settings)
    for name, value in from_env.items():
        argv += _env_flags(parser, name, value)
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as exc:  # named by its options: "--enable-lora/--no-enable-lora"
        options = (exc.argument_name or "").split("/")
        named = (n for n in [*from_env, *own] if _option(n) in options)
        name = next(named, exc.argument_name or "a vLLM argument")
        raise BadEngineArgument(f"{name}: {exc.message}") from None
