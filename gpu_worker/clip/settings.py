"""The CLIP worker's settings, read once from its environment."""

from ipaddress import IPv4Network, IPv6Network

from pydantic import Field

from gpu_worker.common.settings import ModelSettings


class ClipSettings(ModelSettings):
    model_name: str = "openai/clip-vit-base-patch32"
    max_batch: int = Field(32, ge=1, le=1024)
    max_text_chars: int = Field(2_000, ge=1)
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1)
    fetch_connect_timeout_seconds: float = Field(3.0, gt=0)
    fetch_read_timeout_seconds: float = Field(10.0, gt=0)
    # Networks an image URL may resolve into although they are private (tests, sidecars), and
    # URL prefixes fetched wherever they resolve (the local API's own signed-object path).
    fetch_allowed_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    fetch_allowed_prefixes: list[str] = Field(default_factory=list)
