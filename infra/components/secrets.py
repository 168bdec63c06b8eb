"""Secret Manager secrets and their current versions. Reading one is granted per secret, to
the runtime service account only (`grant_access`)."""

import pulumi
import pulumi_gcp as gcp

from infra.components import children
from infra.config import StackConfig


class Secrets(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        config: StackConfig,
        values: dict[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`values`: secret name (e.g. `hmac-secret`) -> its value (a secret Output)."""
        super().__init__("tandem:infra:Secrets", name, None, opts)
        child = children(self, opts)
        self.name = name
        self._child = child
        self.secrets: dict[str, gcp.secretmanager.Secret] = {}
        self.versions: dict[str, gcp.secretmanager.SecretVersion] = {}
        for key, value in values.items():
            secret = gcp.secretmanager.Secret(
                f"{name}-{key}",
                secret_id=f"tandem-{config.stack}-{key}",
                project=config.project,
                replication={"auto": {}},
                labels=config.labels,
                opts=child,
            )
            self.versions[key] = gcp.secretmanager.SecretVersion(
                f"{name}-{key}-version",
                secret=secret.id,
                secret_data=pulumi.Output.secret(value),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(parent=secret)),
            )
            self.secrets[key] = secret
        self.register_outputs({"secret_ids": {k: s.secret_id for k, s in self.secrets.items()}})

    def grant_access(
        self, key: str, member: pulumi.Input[str]
    ) -> gcp.secretmanager.SecretIamMember:
        """Let `member` (e.g. `serviceAccount:...`) read secret `key`, and only that one."""
        secret = self.secrets[key]
        return gcp.secretmanager.SecretIamMember(
            f"{self.name}-{key}-accessor",
            project=secret.project,
            secret_id=secret.secret_id,
            role="roles/secretmanager.secretAccessor",
            member=member,
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(parent=secret)),
        )
