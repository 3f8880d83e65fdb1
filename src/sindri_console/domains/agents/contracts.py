"""What other domains may rely on about a live agent connection on this replica."""

from __future__ import annotations

from typing import Any, Protocol


class AgentConn(Protocol):
    """An identified agent socket held by this replica."""

    instance_id: str
    connection_id: str
    dialect: str | None  # "console" | "draupnir" | "mimir"
    capabilities: list[str]

    @property
    def is_console(self) -> bool:
        """True once a C `hello` was received (only then may commands or report requests be sent)."""
        ...

    async def send_frame(self, type_: str, data: dict[str, Any], *, frame_id: str | None = None,
                         reply_to: str | None = None) -> None:
        """Write one frame in the connection's dialect; raises ConnectionError when the socket is gone."""
        ...
