"""vLLM arguments from the environment, checked by vLLM's own parser (no engine started)."""

import pytest

from gpu_worker.llm.engine_args import BadEngineArgument, serve_args, vllm_names
from gpu_worker.llm.settings import LlmSettings

SETTINGS = LlmSettings(model_name="/models/m", served_model_name="m", dtype="float32")


def test_any_engine_or_serving_argument_by_its_name():
    args = serve_args(
        SETTINGS,
        {
            "ENABLE_PREFIX_CACHING": "true",
            "TRUST_REMOTE_CODE": "0",
            "MAX_NUM_BATCHED_TOKENS": "4096",
            "KV_CACHE_DTYPE": "fp8",
            "SPECULATIVE_CONFIG": '{"method": "ngram", "num_speculative_tokens": 2}',
            "ENABLE_LORA": "yes",
            "LORA_MODULES": "support=/loras/support sales=/loras/sales",
            "CHAT_TEMPLATE": "{{ messages }}",
            "TOOL_CALL_PARSER": "hermes",
            "PATH": "/usr/bin",  # not vLLM's: left alone
        },
    )
    assert args.enable_prefix_caching is True and args.trust_remote_code is False
    assert args.max_num_batched_tokens == 4096 and args.kv_cache_dtype == "fp8"
    assert args.speculative_config == {"method": "ngram", "num_speculative_tokens": 2}
    assert [lora.name for lora in args.lora_modules] == ["support", "sales"]
    assert (args.chat_template, args.tool_call_parser) == ("{{ messages }}", "hermes")


def test_tandems_settings_come_first_and_the_environment_cannot_override_them():
    args = serve_args(SETTINGS, {"DTYPE": "half", "MAX_CONCURRENCY": "4"})
    assert (args.model, args.served_model_name, args.dtype) == ("/models/m", ["m"], "float32")
    assert args.max_num_seqs == SETTINGS.max_concurrency and args.runner == "generate"


def test_names_are_vllms_engine_and_serving_arguments_only():
    names = vllm_names()
    assert {"ENABLE_PREFIX_CACHING", "TOOL_CALL_PARSER", "LORA_MODULES"} <= names
    assert not {"HOST", "PORT", "API_KEY", "MASTER_ADDR", "SSL_KEYFILE"} & names


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MAX_NUM_BATCHED_TOKENS": "lots"}, "MAX_NUM_BATCHED_TOKENS: invalid"),
        ({"ENABLE_LORA": "maybe"}, "ENABLE_LORA='maybe': give true or false"),
        ({"KV_CACHE_DTYPE": "int3"}, "KV_CACHE_DTYPE: invalid choice"),
        ({"SPECULATIVE_CONFIG": "{not json"}, "SPECULATIVE_CONFIG:"),
        ({"STRUCTURED_OUTPUTS_CONFIG": '{"backend": "nope"}'}, "STRUCTURED_OUTPUTS_CONFIG:"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(env, says):
    with pytest.raises(BadEngineArgument, match=says.replace("(", r"\(")):
        serve_args(SETTINGS, env)


def test_structured_outputs_are_compact_json_unless_the_environment_says_otherwise():
    compact = serve_args(SETTINGS, {}).structured_outputs_config
    assert compact.disable_any_whitespace is True and compact.backend == "xgrammar"
    chosen = serve_args(SETTINGS, {"STRUCTURED_OUTPUTS_CONFIG": '{"backend": "guidance"}'})
    assert chosen.structured_outputs_config.backend == "guidance"
    assert chosen.structured_outputs_config.disable_any_whitespace is False
