"""The images a stack deploys and where RunPod pulls them from.

A stack with a repository of its own (dev, prod) makes the Artifact Registry repository and the
credential RunPod pulls the GPU images with: a service account that may only read this
repository, a key of it, and a RunPod container registry credential holding that key
(`_json_key_base64`, Artifact Registry's username for a base64 key). A review stack pushes to
its base stack's repository and uses its credential.

Images are built from this repository with pulumi-docker-build (`images.build`; each image's
context is what its `Dockerfile.dockerignore` lets in, so a change elsewhere rebuilds nothing),
or taken prebuilt as `ref@sha256:...` from the config.
"""

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from infra.components import children
from infra.components.accounts import service_account
from infra.config import REPO_ROOT, ImagesConfig, Scope
from infra.runpod.resources import RegistryAuth
from infra.workers import IMAGES

ARTIFACT_REGISTRY_KEY_USER = "_json_key_base64"  # Artifact Registry's user for a base64 key


class Registry(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        images: ImagesConfig,
        *,
        deploys: list[str],
        base: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`deploys`: the images this stack runs (keys of IMAGES); `base`: the base stack's
        repository (`<host>/<project>/<repository>`) and RunPod registry credential id."""
        super().__init__("tandem:infra:Registry", name, None, opts)
        child = children(self, opts)
        host = f"{scope.region}-docker.pkg.dev"
        if base is None:
            repository = gcp.artifactregistry.Repository(
                f"{name}-repository",
                project=scope.project,
                location=scope.region,
                repository_id=f"tandem-{scope.stack}",
                format="DOCKER",
                labels=scope.labels,
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
            self.repository = pulumi.Output.concat(
                host, "/", scope.project, "/", repository.repository_id
            )
            self.puller: gcp.serviceaccount.Account | None
            self.puller, auth = self._runpod_pull(name, scope, repository, child)
            self.registry_auth_id = auth.id
        else:
            self.puller = None
            self.repository = pulumi.Output.from_input(base[0])
            self.registry_auth_id = pulumi.Output.from_input(base[1])
        self.images: dict[str, pulumi.Output[str]] = {}
        for image in deploys:
            if not images.build:
                self.images[image] = pulumi.Output.from_input(images.refs[image])
                continue
            built = docker_build.Image(
                f"{name}-{image}",
                context={"location": str(REPO_ROOT)},
                dockerfile={"location": str(REPO_ROOT / IMAGES[image])},
                platforms=[docker_build.Platform.LINUX_AMD64],
                tags=[pulumi.Output.concat(self.repository, f"/{image}:{scope.stack}")],
                push=True,
                # Previews (two on every PR push) skip the build: the GPU bases are many GB.
                build_on_preview=False,
                registries=[{"address": host}],
                opts=child,
            )
            self.images[image] = built.ref  # tag@sha256:digest: a new digest rolls out
        self.register_outputs({"images": self.images, "repository": self.repository})

    @staticmethod
    def _runpod_pull(
        name: str,
        scope: Scope,
        repository: gcp.artifactregistry.Repository,
        child: pulumi.ResourceOptions,
    ) -> tuple[gcp.serviceaccount.Account, RegistryAuth]:
        """RunPod's credential for `repository`: a key of an account that may only read it."""
        puller, member, _ = service_account(f"{name}-runpod", scope, "runpod-pull", (), child)
        reads = gcp.artifactregistry.RepositoryIamMember(
            f"{name}-runpod-reads",
            project=scope.project,
            location=scope.region,
            repository=repository.name,
            role="roles/artifactregistry.reader",
            member=member,
            opts=child,
        )
        key = gcp.serviceaccount.Key(
            f"{name}-runpod-key", service_account_id=puller.name, opts=child
        )
        # RunPod credential names are unique: each key gets its own, so a new key (pulumi up
        # --replace on it) is a new credential, in place before the old one goes.
        key_id = key.name.apply(lambda key_name: key_name.rsplit("/", 1)[-1][:12])
        return puller, RegistryAuth(
            f"tandem-{scope.stack}-registry-auth",
            name=pulumi.Output.concat(f"tandem-{scope.stack}-artifact-registry-", key_id),
            username=ARTIFACT_REGISTRY_KEY_USER,
            password=key.private_key,
            opts=pulumi.ResourceOptions(parent=key, depends_on=[reads]),
        )
