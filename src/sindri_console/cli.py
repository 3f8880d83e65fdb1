"""`sindri-console`: serve, migrations, users, keys, version, agent (10-core §3.6).

Human messages go to stderr; stdout carries only what a script needs (a raw key, JSON, a list).
Exit codes: 0 ok, 2 usage/validation, 3 conflict or not found, 1 anything else.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import typer

import sindri_console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sindri Console: fleet control plane")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations")
users_app = typer.Typer(no_args_is_help=True, help="Manage users")
keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _settings(**overrides: Any) -> Any:
    from sindri_console.settings import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        _err(f"Invalid configuration: {exc}")
        raise typer.Exit(2) from None


def _run(coro: Any) -> Any:
    from sindri_console.kit.errors import ApiError

    try:
        return asyncio.run(coro)
    except ApiError as exc:
        _err(exc.message)
        if exc.details:
            for d in exc.details:
                _err(f"  {d['field']}: {d['message']}")
        code = 3 if exc.status in (404, 409) else 2 if exc.status in (400, 422) else 1
        raise typer.Exit(code) from None
    except (OSError, ConnectionError) as exc:
        _err(f"Cannot reach the database: {type(exc).__name__}")
        raise typer.Exit(1) from None


async def _migrate(settings: Any) -> None:
    from sindri_console.db.migrate import upgrade

    await upgrade(settings.database_url)


def _runtime(settings: Any) -> Any:
    from sindri_console.runtime import Runtime

    return Runtime.build(settings)


# ---- serve ------------------------------------------------------------------------------------

@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default 0.0.0.0)"),
    port: int = typer.Option(None, help="Port (default 3001)"),
    workers: int = typer.Option(None, help="Worker processes (default 1)"),
    data_dir: str = typer.Option(None, "--data-dir", help="Directory for the SQLite file and working dirs"),
) -> None:
    """Run the console: migrate, create the first ADMIN on a fresh database, then serve HTTP."""
    if data_dir:
        os.environ["DATA_DIR"] = data_dir
    if host:
        os.environ["HOST"] = host
    if port:
        os.environ["PORT"] = str(port)
    if workers:
        os.environ["WORKERS"] = str(workers)
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from sindri_console.logging import configure_logging

    configure_logging(settings.LOG_LEVEL)
    if settings.SINDRI_CONSOLE_API_KEY and len(settings.SINDRI_CONSOLE_API_KEY) < 32:
        _err("warning: SINDRI_CONSOLE_API_KEY is shorter than 32 characters")
    try:
        asyncio.run(_migrate(settings))
    except Exception as exc:
        _err(f"Database migration failed: {type(exc).__name__}: {str(exc)[:200]}")
        raise typer.Exit(1) from None
    raw = _run(_bootstrap_admin(settings))
    if raw:
        _err("First start: created the ADMIN user admin@localhost. Its API key is shown once below; store it now.")
        typer.echo(raw)
        sys.stdout.flush()
    import uvicorn

    # ws="websockets-sansio": one protocol object per socket with timer-based pings instead of three
    # tasks per socket; at 2 000 idle agent sockets it measured 270 MB RSS against 392 MB (PERFORMANCE.md)
    uvicorn.run("sindri_console.app:create_app", factory=True, host=settings.HOST, port=settings.PORT,
                workers=settings.WORKERS, log_config=None, access_log=False, ws_max_size=settings.AGENT_MAX_FRAME_BYTES,
                ws_ping_interval=settings.WS_PING_INTERVAL_SECONDS, ws_ping_timeout=settings.WS_PING_TIMEOUT_SECONDS,
                timeout_graceful_shutdown=10, ws="websockets-sansio")


async def _bootstrap_admin(settings: Any) -> str | None:
    """On a database with no user at all, create one ADMIN and return its raw key (printed once)."""
    from sqlalchemy import func, select

    from sindri_console.domains.identity.keys import mint_user_key
    from sindri_console.domains.identity.schemas import UserCreate
    from sindri_console.domains.identity.service import create_user
    from sindri_console.kit.audit import write_audit
    from sindri_console.models.identity import User

    rt = _runtime(settings)
    try:
        async with rt.db.write() as s:
            if int(await s.scalar(select(func.count()).select_from(User)) or 0) > 0:
                return None
            user = await create_user(rt, None, UserCreate(email="admin@localhost", role="ADMIN"), actor_kind="CLI",
                                     session=s)
            key, raw = await mint_user_key(s, user_id=user.id, name="initial", role=None, expires_at=None,
                                           created_by=None)
            await write_audit(s, None, "CREATE", "api_key", key.id, {"kind": "USER", "name": "initial",
                                                                     "via": "cli"}, actor_kind="CLI")
            return raw
    finally:
        await rt.db.dispose()


# ---- db ---------------------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    settings = _settings()
    try:
        asyncio.run(_migrate(settings))
    except Exception as exc:
        _err(f"Database migration failed: {type(exc).__name__}: {str(exc)[:200]}")
        raise typer.Exit(1) from None
    _err("Database is up to date.")


@db_app.command("current")
def db_current() -> None:
    """Print the applied revision(s) and whether they are the newest."""
    from sindri_console.db.migrate import current_revisions

    settings = _settings()
    try:
        applied, heads = asyncio.run(current_revisions(settings.database_url))
    except Exception as exc:
        _err(f"Cannot read the database: {type(exc).__name__}")
        raise typer.Exit(1) from None
    typer.echo(" ".join(sorted(applied)) or "(empty)")
    _err("up to date" if applied == heads else f"pending: newest is {' '.join(sorted(heads))}")


# ---- users ------------------------------------------------------------------------------------

def _print_key(out: dict[str, Any], as_json: bool, user: dict[str, Any] | None = None) -> None:
    if as_json:
        doc: dict[str, Any] = {"apiKey": out}
        if user is not None:
            doc["user"] = user
        typer.echo(json.dumps(doc))
    else:
        typer.echo(out["key"])


def _validation(fn: Any) -> Any:
    from pydantic import ValidationError

    try:
        return fn()
    except ValidationError as exc:
        for e in exc.errors():
            _err(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
        raise typer.Exit(2) from None


@users_app.command("create")
def users_create(
    email: str = typer.Option(..., "--email"),
    name: str = typer.Option(None, "--name"),
    role: str = typer.Option("VIEWER", "--role"),
    no_key: bool = typer.Option(False, "--no-key"),
    key_name: str = typer.Option("initial", "--key-name"),
    expires_in_days: int = typer.Option(None, "--expires-in-days"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a user and (unless --no-key) one API key, printed once."""
    from sindri_console.domains.identity.schemas import AdminKeyCreate, UserCreate

    settings = _settings()
    body = _validation(lambda: UserCreate(email=email, name=name, role=role))
    if not no_key:
        _validation(lambda: AdminKeyCreate(kind="USER", user_id="x", name=key_name, expires_in_days=expires_in_days))

    async def go() -> None:
        from sindri_console.domains.identity.keys import mint_user_key, resolve_expiry
        from sindri_console.domains.identity.service import create_user as _create
        from sindri_console.domains.identity.service import key_to_wire, users_to_wire
        from sindri_console.kit.audit import write_audit
        from sindri_console.kit.clock import to_iso

        await _migrate(settings)
        rt = _runtime(settings)
        try:
            expires = resolve_expiry(expires_in_days, None, settings.API_KEY_MAX_LIFETIME_DAYS) if not no_key else None
            async with rt.db.write() as s:
                user = await _create(rt, None, body, actor_kind="CLI", session=s)
                out = None
                if not no_key:
                    key, raw = await mint_user_key(s, user_id=user.id, name=key_name, role=None, expires_at=expires,
                                                   created_by=None)
                    await write_audit(s, None, "CREATE", "api_key", key.id,
                                      {"kind": "USER", "name": key_name, "userId": user.id, "via": "cli",
                                       "expiresAt": to_iso(expires)}, actor_kind="CLI")
                    out = key_to_wire(key, user.email, None)
                    out["key"] = raw
                user_doc = (await users_to_wire(s, [user]))[0]
            if out is not None:
                _print_key(out, as_json, user_doc)
            elif as_json:
                typer.echo(json.dumps({"user": user_doc}))
            _err(f"Created user {user.email} ({user.role}).")
        finally:
            await rt.db.dispose()

    _run(go())


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List users."""
    settings = _settings()

    async def go() -> None:
        from sqlalchemy import select

        from sindri_console.domains.identity.service import users_to_wire
        from sindri_console.models.identity import User

        await _migrate(settings)
        rt = _runtime(settings)
        try:
            async with rt.db.read() as s:
                users = list((await s.scalars(select(User).order_by(User.created_at, User.id))).all())
                docs = await users_to_wire(s, users)
            if as_json:
                typer.echo(json.dumps({"data": docs}))
            else:
                for d in docs:
                    typer.echo(f"{d['id']}\t{d['email']}\t{d['role']}\t{'active' if d['isActive'] else 'inactive'}")
        finally:
            await rt.db.dispose()

    _run(go())


@users_app.command("deactivate")
def users_deactivate(email: str = typer.Option(None, "--email"), user_id: str = typer.Option(None, "--user-id")) -> None:
    """Deactivate a user (their keys stop working at once)."""
    settings = _settings()
    if not email and not user_id:
        _err("Give --email or --user-id")
        raise typer.Exit(2)

    async def go() -> None:
        from sqlalchemy import func, select

        from sindri_console.kit.audit import write_audit
        from sindri_console.kit.clock import utcnow
        from sindri_console.kit.errors import ApiError
        from sindri_console.models.identity import User

        await _migrate(settings)
        rt = _runtime(settings)
        try:
            async with rt.db.write() as s:
                stmt = select(User).where(User.id == user_id) if user_id else select(User).where(
                    func.lower(User.email) == email.lower())
                user = await s.scalar(stmt)
                if user is None:
                    raise ApiError(404, "User not found")
                if not user.is_active:
                    raise ApiError(409, "User is already inactive")
                if user.role == "ADMIN":
                    others = await s.scalar(select(func.count()).select_from(User).where(
                        User.role == "ADMIN", User.is_active.is_(True), User.id != user.id))
                    if not others:
                        raise ApiError(409, "This change would leave no active ADMIN")
                user.is_active = False
                user.updated_at = utcnow()
                await write_audit(s, None, "UPDATE", "user", user.id,
                                  {"changes": {"isActive": {"from": True, "to": False}}, "via": "cli"},
                                  actor_kind="CLI")
            _err(f"Deactivated {user.email}.")
        finally:
            await rt.db.dispose()

    _run(go())


# ---- keys -------------------------------------------------------------------------------------

@keys_app.command("create")
def keys_create(
    email: str = typer.Option(None, "--email"),
    user_id: str = typer.Option(None, "--user-id"),
    instance: str = typer.Option(None, "--instance", help="Agent key for this live instance (id or name)"),
    name: str = typer.Option(None, "--name"),
    role: str = typer.Option(None, "--role"),
    expires_in_days: int = typer.Option(None, "--expires-in-days"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a user key (--email/--user-id) or an agent key (--instance); prints the raw key once."""
    from sindri_console.domains.identity.schemas import AdminKeyCreate

    settings = _settings()
    targets = [x for x in (email, user_id, instance) if x]
    if len(targets) != 1:
        _err("Give exactly one of --email, --user-id or --instance")
        raise typer.Exit(2)
    if instance and role:
        _err("Agent keys carry no role")
        raise typer.Exit(2)

    async def go() -> None:
        from sqlalchemy import func, select

        from sindri_console.domains.identity.service import admin_create_key
        from sindri_console.kit.errors import ApiError
        from sindri_console.models.identity import User
        from sindri_console.models.instance import Instance

        await _migrate(settings)
        rt = _runtime(settings)
        try:
            async with rt.db.read() as s:
                if instance:
                    inst = await s.scalar(select(Instance).where(Instance.id == instance))
                    if inst is None or inst.status in ("DESTROYED", "DEREGISTERED"):
                        inst = await s.scalar(select(Instance).where(
                            Instance.name == instance, Instance.status.not_in(("DESTROYED", "DEREGISTERED"))))
                    if inst is None:
                        raise ApiError(404, f"No live instance '{instance}'")
                    payload = {"kind": "AGENT", "instanceId": inst.id, "name": name or "agent",
                               "expiresInDays": expires_in_days}
                else:
                    uid = user_id
                    if email:
                        uid = await s.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
                    if uid is None or await s.get(User, uid) is None:
                        raise ApiError(404, "User not found")
                    payload = {"kind": "USER", "userId": uid, "name": name or "cli", "role": role,
                               "expiresInDays": expires_in_days}
            body = _validation(lambda: AdminKeyCreate.model_validate(payload))
            out = await admin_create_key(rt, None, body, actor_kind="CLI")
            _print_key(out, as_json)
        finally:
            await rt.db.dispose()

    _run(go())


@keys_app.command("list")
def keys_list(email: str = typer.Option(None, "--email"), as_json: bool = typer.Option(False, "--json")) -> None:
    """List API keys (never the raw keys)."""
    settings = _settings()

    async def go() -> None:
        from sqlalchemy import func, select

        from sindri_console.domains.identity.service import keys_to_wire
        from sindri_console.models.identity import ApiKey, User

        await _migrate(settings)
        rt = _runtime(settings)
        try:
            async with rt.db.read() as s:
                stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
                if email:
                    stmt = stmt.join(User, User.id == ApiKey.user_id).where(func.lower(User.email) == email.lower())
                docs = await keys_to_wire(s, list((await s.scalars(stmt)).all()))
            if as_json:
                typer.echo(json.dumps({"data": docs}))
            else:
                for d in docs:
                    owner = d["userEmail"] or d["instanceName"] or "-"
                    typer.echo(f"{d['id']}\t{d['keyPrefix']}\t{d['kind']}\t{owner}\t{d['status']}\t{d['name']}")
        finally:
            await rt.db.dispose()

    _run(go())


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Option(..., "--id"), reason: str = typer.Option(None, "--reason")) -> None:
    """Revoke a key."""
    settings = _settings()

    async def go() -> None:
        from sindri_console.domains.identity.service import revoke_key
        from sindri_console.kit.errors import ApiError
        from sindri_console.models.identity import ApiKey

        await _migrate(settings)
        rt = _runtime(settings)
        try:
            async with rt.db.read() as s:
                key = await s.get(ApiKey, key_id)
                if key is None:
                    raise ApiError(404, "API key not found")
                if key.revoked_at is not None:
                    raise ApiError(409, "API key is already revoked")
            await revoke_key(rt, None, key_id, owner_id=None, reason=reason or "revoked with the CLI",
                             actor_kind="CLI")
            _err("Revoked.")
        finally:
            await rt.db.dispose()

    _run(go())


@app.command()
def version() -> None:
    """Print the console version."""
    typer.echo(f"sindri-console {sindri_console.__version__}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def agent(ctx: typer.Context) -> None:
    """Run the Sindri Console agent on this instance (configured by environment)."""
    from sindri_console.agent.main import main as agent_main

    raise typer.Exit(agent_main(list(ctx.args)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
