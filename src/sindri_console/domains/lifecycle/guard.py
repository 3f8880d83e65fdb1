"""The one guard of the lifecycle actions (10-core §6.2, §6.3).

`refusal` decides whether an action may start on an instance now; the action routes turn a refusal into a
409 and `GET …/lifecycle` lists the actions it does not refuse, so the two can never disagree.
"""

from __future__ import annotations

from sindri_console.domains.instances.state import REMOVED_STATUSES, SETTLED_STATUSES, TRANSITIONAL_STATUSES
from sindri_console.kit.errors import ApiError

ACTION_ORDER = ("suspend", "resume", "backup", "destroy", "deregister")
DRIVER_ACTIONS = ("suspend", "resume", "backup", "destroy")

# Providers the Sindri CLI can act on (§6.4); every other provider is registration-only.
MANAGED_PROVIDERS = frozenset({"docker", "fly", "devpod", "e2b", "kubernetes", "runpod", "northflank"})

# Request-driven rows 6, 9, 12 and 16 of §6.2, plus backup (§6.7: its infrastructure must be up).
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "suspend": ("RUNNING", "UNREACHABLE"),
    "resume": ("SUSPENDED", "STOPPED", "ERROR", "UNREACHABLE"),
    "backup": ("RUNNING", "UNREACHABLE"),
    "destroy": ("RUNNING", "UNREACHABLE", "SUSPENDED", "STOPPED", "ERROR"),
    "deregister": SETTLED_STATUSES,
}

_PAST = {"suspend": "suspended", "resume": "resumed", "backup": "backed up", "destroy": "destroyed",
         "deregister": "deregistered"}


def is_managed(provider: str | None) -> bool:
    return provider in MANAGED_PROVIDERS


def refusal(
    *,
    name: str,
    status: str,
    provider: str | None,
    active_job_id: str | None,
    action: str,
    with_backup: bool = False,
) -> str | None:
    """Why `action` cannot start now (one sentence for a 409), or None when it may.

    Checked in this order: removed, operation in progress (active job or transitional status), unmanaged
    provider (driver actions only), status not allowed, then `destroy` with a backup from a status where a
    backup is impossible.
    """
    if action not in ALLOWED_FROM:
        raise ValueError(f"unknown lifecycle action {action}")
    verb = _PAST[action]
    if status in REMOVED_STATUSES:
        return f"Instance '{name}' cannot be {verb}: current status is {status}"
    if active_job_id is not None:
        return f"Instance '{name}' has an operation in progress (job {active_job_id})"
    if status in TRANSITIONAL_STATUSES:
        return f"Instance '{name}' has an operation in progress: current status is {status}"
    if action in DRIVER_ACTIONS and not is_managed(provider):
        shown = provider if provider is not None else "none"
        return (f"Provider '{shown}' is not managed by the lifecycle driver; "
                f"only deregistration is possible")
    if status not in ALLOWED_FROM[action]:
        return f"Instance '{name}' cannot be {verb}: current status is {status}"
    if action == "destroy" and with_backup and status not in ALLOWED_FROM["backup"]:
        return f"Instance '{name}' cannot be destroyed with a backup: current status is {status}"
    return None


def available_actions(*, name: str, status: str, provider: str | None, active_job_id: str | None) -> list[str]:
    """The actions `refusal` lets through, in the fixed order of §6.3."""
    return [a for a in ACTION_ORDER
            if refusal(name=name, status=status, provider=provider, active_job_id=active_job_id, action=a) is None]


def ensure_allowed(*, name: str, status: str, provider: str | None, active_job_id: str | None, action: str,
                   with_backup: bool = False) -> None:
    """Raise the 409 of §6.5 when `refusal` refuses."""
    reason = refusal(name=name, status=status, provider=provider, active_job_id=active_job_id, action=action,
                     with_backup=with_backup)
    if reason is not None:
        raise ApiError(409, reason)
