"""The metrics rollup loop (10-core §16.2): lease `metrics-rollup`, every 60 s.

One tick:
1. 1-minute rows for every closed minute after the `1m` watermark (at most 1440 per tick) from raw
   points: `MINUTES_PER_UNIT` minutes are claimed at a time, then built and written a few minutes at
   a time (about `ROWS_PER_READ` rows), each write advancing the watermark;
2. 1-minute rows of the dirty set (late points, ≤ 5000 per tick), deleting the dirty rows they cover;
3. 15-minute and 1-hour rows for every closed bucket after the `15m` / `1h` watermarks (a bucket
   is closed once the `1m` watermark passed its end) and for the buckets touched by (2), from
   1-minute rows. (The 15-minute tier is ours, not the spec's: it lets the 24-hour fleet series read
   96 rows per instance instead of 1440.)

Every write is an idempotent upsert, so a tick that dies half-way is simply redone by the next one.
Rollup queries run in read transactions and only their results are written in short write
transactions: sample writers (SQLite's one write connection, PostgreSQL's claim-line row lock) never
wait for an aggregate query. Sample writers read the `1m-claim` line with a shared lock; the rollup
moves it before reading the minutes it claimed, so no committed point slips between a rollup and its
watermark (`1m` = minutes built).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.db.engine import Database
from sindri_console.domains.metrics import repository as repo
from sindri_console.domains.metrics.repository import MINUTE_MS
from sindri_console.kit.clock import clock
from sindri_console.models.metrics import Metric1m

LEASE = "metrics-rollup"
INTERVAL_SECONDS = 60
LEASE_TTL_SECONDS = 120
MAX_MINUTES_PER_TICK = 1440
# minutes claimed per short claim transaction (the claim line is what sample writers share-lock)
MINUTES_PER_UNIT = 15
MAX_DIRTY_PER_TICK = 5000
ROWS_PER_READ = 5000
COARSE_TIERS = ("15m", "1h")
# a minute is rolled up a few seconds after it closes: points stamped at its end are usually in by then
# (later ones are still caught by the dirty set)
CLOSE_GRACE_MS = 5_000


@dataclass
class RollupResult:
    minutes: int = 0
    dirty: int = 0
    coarse: dict[str, int] = field(default_factory=dict)  # tier -> buckets written
    watermarks: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.minutes or self.dirty or self.coarse)


async def _initial_minute_mark(db: Database, now_ms: int) -> int:
    async with db.read() as s:
        oldest = await repo.oldest_raw_ms(s)
    start = oldest if oldest is not None else now_ms
    return start // MINUTE_MS * MINUTE_MS


async def _advance(session: AsyncSession, dialect: Dialect, name: str, value: int) -> None:
    """Move a watermark forward only: two overlapping ticks never move it back."""
    current = await repo.lock_watermark(session, name)
    if current is None or current < value:
        await repo.set_watermark(session, dialect, name, value)


async def rollup_tick(db: Database, *, now_ms: int | None = None) -> RollupResult:
    """Run steps (1)-(3) once. Safe to run concurrently with sample writers and with itself."""
    now = clock.now_ms() if now_ms is None else now_ms
    closed_end = (now - CLOSE_GRACE_MS) // MINUTE_MS * MINUTE_MS
    result = RollupResult()
    dialect = db.dialect

    async with db.read() as s:
        marks = await repo.read_watermarks(s)
    if "1m" not in marks:
        initial = min(await _initial_minute_mark(db, now), closed_end)
        async with db.write() as s:
            if await repo.lock_watermark(s, "1m") is None:
                await repo.set_watermark(s, dialect, "1m", initial)

    # (1) closed minutes after the watermark, oldest first. The claim line moves in a short write
    # transaction; the minutes are then computed in a read transaction and written in another short
    # write transaction, so sample writers never wait for a rollup query.
    async with db.read() as s:
        # minutes per read: about ROWS_PER_READ rows in memory at a time whatever the fleet size
        span = max(1, min(MINUTES_PER_UNIT, ROWS_PER_READ // max(1, await repo.reporting_instances(s)))) * MINUTE_MS
    budget_end: int | None = None
    while True:
        async with db.write() as s:
            claim = await repo.lock_watermark(s, repo.MINUTE_CLAIM)
            built = await repo.lock_watermark(s, "1m")
            if built is None:  # set above and never deleted; nothing to do without it
                break
            if claim is None or claim < built:
                claim = built
            if budget_end is None:
                budget_end = min(closed_end, built + MAX_MINUTES_PER_TICK * MINUTE_MS)
            if claim > built:
                hi = min(claim, built + MINUTES_PER_UNIT * MINUTE_MS)  # finish a claim a failed tick left
            else:
                hi = min(budget_end, built + MINUTES_PER_UNIT * MINUTE_MS)
                if hi <= built:
                    break
                await repo.set_watermark(s, dialect, repo.MINUTE_CLAIM, hi)
        for lo in range(built, hi, span):
            end = min(hi, lo + span)
            async with db.read() as s:
                rows = await repo.read_rollup_rows(s, repo.minutes_select(dialect, lo, end))
            async with db.write() as s:
                await repo.upsert_rollup_rows(s, dialect, Metric1m, rows)
                await _advance(s, dialect, "1m", end)
        result.minutes += (hi - built) // MINUTE_MS

    # (2) late points: recompute their minutes (under the claim line's lock: a late point committed
    # meanwhile would find its dirty mark taken and then deleted)
    async with db.write() as s:
        await repo.lock_watermark(s, repo.MINUTE_CLAIM)
        keys = await repo.take_dirty(s, MAX_DIRTY_PER_TICK)
        if keys:
            await repo.rollup_dirty_minutes(s, dialect, keys)
    result.dirty = len(keys)

    # (3) closed 15-minute and hour buckets after their watermarks, then those the dirty minutes belong to
    async with db.read() as s:
        marks = await repo.read_watermarks(s)
        missing = [tier for tier in COARSE_TIERS if tier not in marks]
        oldest_minute = await repo.oldest_minute_ms(s) if missing else None
    minute_mark = marks["1m"]
    for tier in COARSE_TIERS:
        step = repo.TIER_STEP_MS[tier]
        # a bucket is closed once the 1m watermark passed its end: it is built from 1-minute rows
        closed = minute_mark // step * step
        if tier in missing:
            start = min(oldest_minute if oldest_minute is not None else minute_mark, minute_mark)
            async with db.write() as s:
                if await repo.lock_watermark(s, tier) is None:
                    await repo.set_watermark(s, dialect, tier, start // step * step)
        tier_end: int | None = None
        while True:
            # one bucket per round: computed in a read transaction, written in a short write one
            async with db.read() as s:
                mark = (await repo.read_watermarks(s)).get(tier)
                if mark is None:
                    break
                if tier_end is None:  # the same per-tick bound as the minutes
                    tier_end = min(closed, mark + MAX_MINUTES_PER_TICK * MINUTE_MS)
                hi = min(tier_end, mark + step)
                if hi <= mark:
                    break
                rows = await repo.read_rollup_rows(s, repo.coarse_select(dialect, tier, mark, hi))
            async with db.write() as s:
                await repo.upsert_rollup_rows(s, dialect, repo.ROLLUP_MODELS[tier], rows)
                await _advance(s, dialect, tier, hi)
            result.coarse[tier] = result.coarse.get(tier, 0) + (hi - mark) // step
    async with db.read() as s:
        marks = await repo.read_watermarks(s)
    for tier in COARSE_TIERS:
        step = repo.TIER_STEP_MS[tier]
        # buckets at or after the watermark are built by the loop above once they close
        late = sorted({(inst, minute // step * step) for inst, minute in keys if minute // step * step < marks[tier]})
        if late:
            async with db.write() as s:
                await repo.rollup_instance_buckets(s, dialect, tier, late)
            result.coarse[tier] = result.coarse.get(tier, 0) + len(late)
    result.watermarks = marks
    return result
