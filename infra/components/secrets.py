"""Secret Manager secrets and their current versions, the HMAC secret that signs the API's
requests to the GPU workers and the keys that seal tenants' RunPod keys among them. Reading
one is granted per secret, to the runtime service account only (`grant_access`)."""

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.components import children
from infra.config import Scope

HMAC_SECRET = "hmac-secret"  # noqa: S105 (the secret's name)
TENANT_KEKS = "tenant-key-encryption-keys"  # the API's TENANT_KEY_ENCRYPTION_KEYS


class Secrets(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        scope: Scope,
        values: dict[str, pulumi.Input[str]],
        *,
        hmac_secret: pulumi.Input[str] | None = None,
        kek_generation: int = 1,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`values`: secret name (e.g. `database-url`) -> its value (a secret Output). The HMAC
        secret (`hmac-secret`, also `self.hmac_secret`) is `hmac_secret` when the workers are
        another stack's (theirs), else a new random one. `tenant-key-encryption-keys` holds
        the random KEK of `kek_generation` (it seals) and the one before it (it still opens
        what it sealed until the API, at its start, wraps those data keys again)."""
        super().__init__("tandem:infra:Secrets", name, None, opts)
        child = children(self, opts)
        self.name = name
        self._child = child
        if hmac_secret is None:
            hmac_secret = random.RandomPassword(
                f"{name}-hmac",
                length=48,
                special=False,
                # Made at the program's top level before: the same resource, not a new secret.
                opts=pulumi.ResourceOptions(
                    parent=self,
                    aliases=[pulumi.Alias(name="hmac-secret", parent=pulumi.ROOT_STACK_RESOURCE)],
                ),
            ).result
        self.hmac_secret = pulumi.Output.secret(hmac_secret)
        keks = [
            pulumi.Output.concat(
                f"g{generation}:",
                random.RandomBytes(
                    f"{name}-kek-{generation}", length=32, opts=pulumi.ResourceOptions(parent=self)
                ).base64,
            )
            for generation in range(kek_generation, max(kek_generation - 2, 0), -1)
        ]
        generated = {
            HMAC_SECRET: self.hmac_secret,
            TENANT_KEKS: pulumi.Output.all(*keks).apply(",".join),
        }
        self.secrets: dict[str, gcp.secretmanager.Secret] = {}
        self.versions: dict[str, gcp.secretmanager.SecretVersion] = {}
        for key, value in {**values, **generated}.items():
            secret = gcp.secretmanager.Secret(
                f"{name}-{key}",
                secret_id=f"tandem-{scope.stack}-{key}",
                project=scope.project,
                replication={"auto": {}},
                labels=scope.labels,
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
