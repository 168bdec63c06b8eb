"""`StackConfig`: the stack files parse, and every bad value fails with one line naming the
key and what it accepts."""

import pytest

from infra.config import ConfigError, parse, stack_file

GPU = {"gpuTypes": ["NVIDIA GeForce RTX 4090"]}


SECRETS = {"runpodApiKey": "rp-key"}


def valid(**overrides) -> dict:
    return {
        "stack": "dev",
        "environment": "dev",
        "project": "p",
        "gpu": {"llm": GPU, "clip": GPU},
    } | overrides


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_files_are_valid(stack):
    config = stack_file(stack, stand_in_secrets=("runpodApiKey",))
    assert config.environment == stack
    assert config.scope.labels == {"env": stack, "stack": stack, "app": "tandem"}


def test_prod_is_protected_and_warm():
    prod = stack_file("prod", stand_in_secrets=("runpodApiKey",))
    assert prod.database.deletion_protection and prod.database.point_in_time_recovery
    assert prod.database.high_availability and prod.api.deletion_protection
    assert prod.api.min_instances >= 1 and prod.gpu["llm"].workers_min >= 1


def test_dev_scales_to_zero():
    dev = stack_file("dev", stand_in_secrets=("runpodApiKey",))
    assert dev.api.min_instances == 0
    assert dev.gpu["llm"].workers_min == dev.gpu["clip"].workers_min == 0


@pytest.mark.parametrize(
    ("words", "pools", "excluded"),
    [
        (["NVIDIA GeForce RTX 4090"], ["ADA_24"], ["NVIDIA L4"]),  # one card of its pool
        (["NVIDIA GeForce RTX 4090", "NVIDIA L4"], ["ADA_24"], []),  # both: the whole pool
        (["ADA_24", "NVIDIA RTX A5000"], ["ADA_24", "AMPERE_24"], ["NVIDIA RTX A4500",
                                                                   "NVIDIA GeForce RTX 3090"]),
        (["48gb"], ["AMPERE_48", "ADA_48_PRO"], []),  # a size: every pool of it
    ],
)  # fmt: skip
def test_gpu_types_are_read_in_the_catalog_as_pools(words, pools, excluded):
    config = parse(valid(gpu={"llm": {"gpuTypes": words}, "clip": GPU}), SECRETS)
    selection = config.gpu["llm"].gpu_selection()
    assert (selection.pools, selection.excluded_types) == (pools, excluded)


REF = "registry.test/img@sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (
            {"gpu": {"llm": {"gpuTypes": ["RTX 9999"]}, "clip": GPU}},
            "tandem:gpu.llm: 'RTX 9999' is no RunPod serverless pool, GPU type or size: give a "
            "pool (AMPERE_16, ",
        ),
        (
            {"gpu": {"llm": {**GPU, "workersMin": 3, "workersMax": 1}, "clip": GPU}},
            "tandem:gpu.llm: workersMin must not exceed workersMax",
        ),
        ({"gpu": {"llm": {"gpuTypes": []}, "clip": GPU}}, "tandem:gpu.llm.gpuTypes"),
        (
            {"api": {"minInstances": 5, "maxInstances": 2}},
            "tandem:api: minInstances must not exceed maxInstances",
        ),
        ({"api": {"minInstance": 1}}, "tandem:api.minInstance: Extra inputs are not permitted"),
        (
            {"storage": {"retentionDays": 0}},
            "tandem:storage.retentionDays: Input should be greater than or equal to 1",
        ),
        (
            {"gpu": {"llm": {"gpuTypes": ["12gb"]}, "clip": GPU}},
            "tandem:gpu.llm: no serverless pool has 12 GB: sizes are 16gb, 24gb, 32gb, 48gb, 80gb",
        ),
        (
            {"gpu": {"llm": {**GPU, "allowedCudaVersions": ["12"]}, "clip": GPU}},
            "tandem:gpu.llm.allowedCudaVersions.0: String should match pattern",
        ),
        (
            {"database": {"backupStartTime": "25:00"}},
            "tandem:database.backupStartTime: String should match pattern",
        ),
        (
            {"database": {"maintenanceDay": 0}},
            "tandem:database.maintenanceDay: Input should be greater than or equal to 1",
        ),
        (
            {"storage": {"noncurrentDays": 400}},
            "tandem:storage.noncurrentDays: Input should be less than or equal to 365",
        ),
        (
            {"database": {"provider": "mysql"}},
            "tandem:database.provider: Input should be 'cloudsql' or 'supabase'",
        ),
        ({"database": {"provider": "supabase"}}, "needs the secret tandem:supabaseDatabaseUrl"),
        (
            {"database": {"provider": "supabase", "poolMode": "statement"}},
            "tandem:database.poolMode",
        ),
        (
            {"environment": "staging"},
            "tandem:environment: Input should be 'dev', 'prod' or 'review'",
        ),
        ({"environment": "review"}, "ttlHours is required on a review stack"),
        ({"images": {"build": False, "api": "api:latest"}}, "api must be an image ref@sha256"),
        ({"ci": {"githubRepository": "not a repo"}}, "tandem:ci.githubRepository"),
        (
            {"ci": {"githubRepository": "o/r"}},
            "tandem:ci: githubRepository and githubRepositoryId go together",
        ),
        (
            {"ci": {"githubRepository": "o/r", "githubRepositoryId": "o/r"}},
            "tandem:ci.githubRepositoryId: String should match pattern",
        ),
        ({"environment": "review", "ttlHours": 72}, "baseStack is set on review stacks, and only"),
        ({"baseStack": "dev"}, "baseStack is set on review stacks, and only there"),
        ({"ownGpuEndpoints": True}, "ownGpuEndpoints is a review stack setting"),
        (
            {"gpu": {"llm": {**GPU, "networkVolumeIds": []}, "clip": GPU}},
            "tandem:gpu.llm.networkVolumeIds: List should have at least 1 item",
        ),
        (
            {"runpodApiBase": "https://rest.runpod.io/v1"},  # v1's, retired: a host, no path
            "tandem:runpodApiBase: String should match",
        ),
        (
            {"gpu": {"llm": GPU, "clip": GPU, "whisper": GPU}},
            "tandem:gpu: whisper is no GPU worker type: the types are llm, clip, embed, transcribe",
        ),
        ({"gpu": {"llm": GPU}}, "tandem:gpu: clip is required (every stack runs llm, clip)"),
        (
            {"gpu": {"llm": GPU, "clip": GPU, "transcribe": {"gpuTypes": ["RTX 9999"]}}},
            "tandem:gpu.transcribe: 'RTX 9999' is no RunPod serverless pool",
        ),
        ({"images": {"build": True, "whisper": "x"}}, "whisper is no image: the images are api"),
        (
            {"budget": {"monthlyUsd": -5}},
            "tandem:budget.monthlyUsd: Input should be greater than 0",
        ),
        ({"budget": {"monthlyUsd": "lots"}}, "tandem:budget.monthlyUsd: Input should be a valid"),
        (
            {"gpu": {"llm": {**GPU, "expectedActiveHours": -1}, "clip": GPU}},
            "tandem:gpu.llm.expectedActiveHours: Input should be greater than or equal to 0",
        ),
        (
            {
                "gpu": {"llm": GPU, "clip": GPU, "transcribe": GPU},
                "images": {"build": False} | {name: REF for name in ("api", "llm", "clip")},
            },
            "with images.build false, transcribe must be an image ref@sha256",
        ),
    ],
)
def test_bad_values_name_the_key(overrides, words):
    with pytest.raises(ConfigError) as error:
        parse(valid(**overrides), SECRETS)
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_prebuilt_images_are_the_ones_the_stack_runs():
    """With build false, a stack gives a ref for the API and each worker image it runs."""
    refs = {name: REF for name in ("api", "llm", "clip")}
    config = parse(valid(images={"build": False, **refs}), SECRETS)
    assert config.images.refs == refs and config.deployed_images == ["api", "clip", "llm"]


def test_the_runpod_key_is_required():
    with pytest.raises(ConfigError, match="tandem:runpodApiKey is missing"):
        parse(valid(), {})


def test_supabase_needs_its_ca_certificate():
    with pytest.raises(ConfigError, match="needs the secret tandem:supabaseCaCert"):
        parse(valid(database={"provider": "supabase"}), {**SECRETS, "supabaseDatabaseUrl": "x"})


def test_supabase_with_its_secret_is_fine():
    secrets = {**SECRETS, "supabaseDatabaseUrl": "postgresql://...", "supabaseCaCert": "PEM"}
    config = parse(valid(database={"provider": "supabase"}), secrets)
    assert config.database.provider == "supabase"


@pytest.mark.parametrize(
    ("clip", "served"),
    [
        (GPU, None),  # the worker's default, which is the API's
        ({**GPU, "model": "org/clip"}, "org/clip"),
        ({**GPU, "model": "org/clip", "env": {"SERVED_MODEL_NAME": "clip"}}, "clip"),
    ],
)
def test_the_api_learns_the_clip_models_id(clip, served):
    """What the CLIP worker's answers carry, for the API's CLIP_MODEL (/v1/embeddings)."""
    config = parse(valid(gpu={"llm": GPU, "clip": clip}), SECRETS)
    assert config.gpu["clip"].served_model() == served


def test_a_review_stack_is_dev_with_the_review_overrides():
    review = stack_file("pr-12", stand_in_secrets=("runpodApiKey",))
    dev = stack_file("dev", stand_in_secrets=("runpodApiKey",))
    assert (review.environment, review.ttl_hours) == ("review", 72)
    assert (review.base_stack, review.owns_gpu_endpoints) == ("dev", False)
    assert review.gpu["llm"].workers_max == 1
    assert review.gpu["llm"].gpu_types == dev.gpu["llm"].gpu_types  # the rest is dev's
    assert review.scope.labels["ttl"] == "72h"


@pytest.mark.parametrize("stack", ["staging", "pr-0", "pr-x"])
def test_an_unknown_stack_is_named(stack):
    with pytest.raises(ConfigError, match=f"unknown stack '{stack}'"):
        stack_file(stack)
