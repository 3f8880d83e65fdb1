"""Provider names and their aliases: one list for registration, deployments, geo and the agent (40 §2.3)."""

from __future__ import annotations

PROVIDERS: tuple[str, ...] = (
    "fly",
    "docker",
    "devpod",
    "e2b",
    "kubernetes",
    "runpod",
    "northflank",
    "digitalocean",
    "gcp",
    "azure",
    "aws",
    "ssh",
)

# 40-agent-protocol §2.3, plus `docker-compose` (20-ops: a compose deployment is a docker instance).
PROVIDER_ALIASES: dict[str, str] = {
    "k8s": "kubernetes",
    "kube": "kubernetes",
    "do": "digitalocean",
    "gce": "gcp",
    "google": "gcp",
    "gcloud": "gcp",
    "ec2": "aws",
    "amazon": "aws",
    "fly.io": "fly",
    "flyio": "fly",
    "az": "azure",
    "docker-compose": "docker",
}


def normalise_provider(value: str) -> str | None:
    """Canonical provider for ``value`` (trimmed, any case, aliases applied); None when unknown."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    if key in PROVIDERS:
        return key
    return PROVIDER_ALIASES.get(key)
