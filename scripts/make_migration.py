"""Autogenerate a migration from the models: `python scripts/make_migration.py <rev_id> "<message>"`.

The new revision follows the current head (one linear chain). Review the file: expression indexes,
FTS/trigram objects and dialect-guarded blocks must be written by hand.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from sindri_console.db.migrate import _with_connection, alembic_config, upgrade


def main() -> None:
    rev_id, message = sys.argv[1], sys.argv[2]
    (head,) = ScriptDirectory.from_config(alembic_config()).get_heads()
    parent = sys.argv[3] if len(sys.argv) > 3 else head
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'gen.db'}"
        asyncio.run(upgrade(url))

        def run(conn: object) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id, head=parent, splice=True)

        asyncio.run(_with_connection(url, run))


if __name__ == "__main__":
    main()
