"""The Artifact Registry repository and the three images: built from this repository with
pulumi-docker-build (`images.build`), or prebuilt `ref@sha256:...` refs from the config."""

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from infra.components import children
from infra.config import REPO_ROOT, StackConfig

DOCKERFILES = {
    "api": "app/Dockerfile",
    "llm": "gpu_worker/llm/Dockerfile",
    "clip": "gpu_worker/clip/Dockerfile",
}


class Registry(pulumi.ComponentResource):
    def __init__(
        self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tandem:infra:Registry", name, None, opts)
        child = children(self, opts)
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=config.project,
            location=config.region,
            repository_id=f"tandem-{config.stack}",
            format="DOCKER",
            labels=config.labels,
            cleanup_policies=[
                {
                    "id": "keep-recent",
                    "action": "KEEP",
                    "most_recent_versions": {"keep_count": 10},
                },
                {
                    "id": "delete-old",
                    "action": "DELETE",
                    "condition": {"older_than": "2592000s"},  # 30 days
                },
            ],
            opts=child,
        )
        self.images: dict[str, pulumi.Output[str]] = {}
        address = f"{config.region}-docker.pkg.dev"
        for image, dockerfile in DOCKERFILES.items():
            if not config.images.build:
                self.images[image] = pulumi.Output.from_input(getattr(config.images, image))
                continue
            repo = pulumi.Output.concat(
                address, "/", config.project, "/", self.repository.repository_id
            )
            built = docker_build.Image(
                f"{name}-{image}",
                context={"location": str(REPO_ROOT)},
                dockerfile={"location": str(REPO_ROOT / dockerfile)},
                platforms=["linux/amd64"],
                tags=[pulumi.Output.concat(repo, f"/{image}:{config.stack}")],
                push=True,
                # Previews (two on every PR push) skip the build: the GPU bases are many GB.
                build_on_preview=False,
                registries=[{"address": address}],
                opts=child,
            )
            self.images[image] = built.ref  # tag@sha256:digest: a new digest rolls out
        self.register_outputs({"images": self.images})
