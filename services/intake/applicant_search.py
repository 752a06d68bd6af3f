"""Finding a dossier by its applicant, as a desk officer types it: any part of the name, with or
without diacritics, or a whole ID number (CCCD, CMND, passport).

Two keys are stored beside the applicant: the folded name (``applicant_search``, served on
PostgreSQL by a trigram index, so a fragment anywhere in the name is found: "nhung" finds
"Nguyễn Thị Hồng Nhung") and the ID number's key (``applicant_id_number``, a btree: an ID is
looked up exactly, never as a fragment, since nine digits of one CCCD are inside many others).

Why the name search on PostgreSQL is not one query left to the planner (measured at 10^6 rows,
bench/search.py): name parts are very unevenly common — a third of the province is Nguyễn, half
has Văn or Thị — and the planner errs both ways. Walking the newest-first index is cheap for a
common part and ruinous for a rare one (hundreds of thousands of rows when it misjudges, as it
does for "Cầm … Yến": "yen" is inside every "nguyen"); the trigram index is cheap for a rare part
and slow for a common one (every trigram of "nguyen" lists 40 % of the table, and all of them are
read). So a page is read in up to three steps, each bounded:

1. the newest ``WINDOW`` dossiers only, the name parts checked row by row: a common name fills
   the page here (if the window holds a full page of matches, no older one can come before them);
2. otherwise, how often each part occurs in that window (its share, the part's selectivity), how
   often all of them do, and how many of the window's dossiers are in the desk's subtree;
3. in a small subtree (a ward's desk: a twentieth of the province), the newest-first walk of the
   subtree's own rows, when it is expected to meet a page soon or every part is common; else the
   trigram index with only the rarest parts — as many as pay for themselves — for the
   candidates, the other parts checked on them; or, when every part is common, the newest-first
   walk of the table, which then stops early.

The walk of a small subtree is why the index of an agency's dossiers newest first (agency path,
received_at, id) also holds the folded name: the walk reads that index alone, each agency path of
the subtree backwards, merged, and checks the parts on its entries, so only the page's rows are
read from the table. The walk of the table reads rows of every agency and keeps the subtree's:
"Lò Văn" at a ward's desk ("lo" is shorter than a trigram, "van" in a third of names) read 80,000
rows for its page, 50-80 ms; the subtree's walk reads 3,900 of the index's entries, under 1 ms
("nguyen thi hong": 14,600, 3 ms; a ward's 50,000 entries, all of them, 8-18 ms at worst).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.util import ClauseAdapter

from services.intake import views
from services.intake.models import Dossier
from shared.db import fetch_rows
from shared.text import fold, tokens

NAME_KEY_LENGTH = 500  # the column's length
WINDOW = 5000  # newest dossiers checked row by row first: a part in 1 % of names fills a page of 50
TRIGRAM = 3  # a part shorter than this has no trigram: the index cannot narrow it
# A part in fewer names than this is looked up in the trigram index: its candidates are fewer
# than the rows a newest-first walk reads before it finds a page of them (WINDOW * RARE >= 50).
RARE = 0.02
# What one candidate's visit to the table costs against one entry of the trigram index read:
# a further part goes into the index condition while reading its entries costs less than the
# visits it saves (measured on the bench's table: a visit is a random heap page, an entry a few
# bytes of a compressed posting list).
VISIT_COST_IN_ENTRIES = 100
# A desk's subtree that holds less than this share of the window is walked path by path (its
# own rows only, from the path index without the table), when it has at most PATHS_WALKED agency
# paths with dossiers (each is a branch of the statement, planned each time), and the walk is
# expected to meet a page within WALKED entries (a few milliseconds), or every part is common.
SUBTREE_WALKED = 0.5
PATHS_WALKED = 16
WALKED = 20_000
NEWEST_FIRST = (Dossier.received_at.desc(), Dossier.id.desc())
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")
_NO_WORKERS = text("SET LOCAL max_parallel_workers_per_gather = 0")
# The agency paths under a prefix that hold dossiers, each found by one descent of the path index
# (a loose index scan): ~>~ and USING ~<~ are the pattern operators that index is ordered by,
# whatever the database's collation. The first row is the smallest path, each next the one after.
_PATHS_UNDER = text(
    """
    WITH RECURSIVE paths(path) AS (
        SELECT (SELECT agency_path FROM dossier WHERE agency_path LIKE :prefix || '%'
                ORDER BY agency_path USING ~<~ LIMIT 1)
        UNION ALL
        SELECT (SELECT agency_path FROM dossier WHERE agency_path LIKE :prefix || '%' AND agency_path ~>~ paths.path
                ORDER BY agency_path USING ~<~ LIMIT 1)
        FROM paths WHERE paths.path IS NOT NULL
    )
    SELECT path FROM paths WHERE path IS NOT NULL
    """
)


def name_key(full_name: str) -> str:
    """The folded name a fragment is looked for in: lowercase, no diacritics, single spaces."""
    return fold(full_name)[:NAME_KEY_LENGTH]


def id_number_key(id_number: str | None) -> str | None:
    """An ID number as it is compared: its letters and digits only, folded (``"C 123-4567"`` →
    ``"c1234567"``); None when it has none."""
    return "".join(tokens(id_number or "")) or None


def _part(word: str, *, indexed: bool = True) -> ColumnElement[bool]:
    """``applicant_search LIKE '%word%'``; not ``indexed``: the same test on an expression no index
    covers, so that the planner checks it on the rows found and cannot build its bitmap from it."""
    column = Dossier.applicant_search if indexed else Dossier.applicant_search.concat("")
    return column.contains(word, autoescape=True)


@dataclass(frozen=True)
class ApplicantQuery:
    """What a search box's text asks for: the words that carry a digit make the ID number (an
    ID typed in groups, "038 190 001 234", is one number), the others are name parts."""

    name_parts: tuple[str, ...]
    id_number: str | None

    @classmethod
    def parse(cls, text: str) -> ApplicantQuery:
        words = tokens(text)
        numbered = [w for w in words if any(ch.isdigit() for ch in w)]
        return cls(
            name_parts=tuple(dict.fromkeys(w for w in words if w not in numbered)),
            id_number="".join(numbered) or None,
        )

    def conditions(self, *, indexed: frozenset[str] | None = None) -> list[ColumnElement[bool]]:
        """Every condition must hold: each name part is a LIKE '%part%' on the folded name (the
        form the trigram index serves, SQLite scans), the ID number an equality. With
        ``indexed``, only those parts may use the trigram index."""
        found = [_part(p, indexed=indexed is None or p in indexed) for p in self.name_parts]
        if self.id_number:
            found.append(Dossier.applicant_id_number == self.id_number)
        return found


def newest_page(query: Select[Any], limit: int) -> Select[Any]:
    """``limit`` rows of ``query`` newest first, and one more to tell whether a next page exists."""
    return query.order_by(*NEWEST_FIRST).limit(limit + 1)


def index_parts(shares: dict[str, float]) -> frozenset[str]:
    """The parts the trigram index looks up, given each part's share of recent names: none when
    even the rarest is common (the newest-first walk finds a page sooner than the index lists its
    candidates), else the rarest, then each next rarest while reading its index entries (its
    share of rows) costs less than the visits it saves (the candidates it removes, estimated as
    if parts were independent)."""
    ordered = sorted((p for p in shares if len(p) >= TRIGRAM), key=shares.__getitem__)
    if not ordered or shares[ordered[0]] >= RARE:
        return frozenset()
    chosen: list[str] = []
    candidates = 1.0  # share of rows still candidates
    for part in ordered:
        share = shares[part]
        if chosen and share >= VISIT_COST_IN_ENTRIES * candidates * (1 - share):
            break
        chosen.append(part)
        candidates *= share
    return frozenset(chosen)


def _recent(after: ColumnElement[bool] | None) -> Select[Any]:
    """The newest ``WINDOW`` dossiers after the cursor, whatever the list's scope and filters (so
    the walk stays bounded also in an agency that has few of them)."""
    return select(Dossier).where(*([] if after is None else [after])).order_by(*NEWEST_FIRST).limit(WINDOW)


def window_page(
    query: Select[Any], search: ApplicantQuery, *, after: ColumnElement[bool] | None, limit: int
) -> Select[Any]:
    """Step 1: the page among the newest ``WINDOW`` dossiers only. They are a subquery the planner
    cannot see through; the list's conditions and the name parts are checked on its rows."""
    window = _recent(after).subquery("recent")
    on_window = ClauseAdapter(window).traverse
    conditions = [*([] if query.whereclause is None else [query.whereclause]), *search.conditions()]
    return (
        select(*(window.c[column.key] for column in query.selected_columns))
        .where(*(on_window(c) for c in conditions))
        .order_by(window.c.received_at.desc(), window.c.id.desc())
        .limit(limit + 1)
    )


def shares_in_window(
    search: ApplicantQuery, *, after: ColumnElement[bool] | None, subtree: str | None = None
) -> Select[Any]:
    """Step 2: how many dossiers the window holds, how many of them are in the ``subtree`` (all
    without one), how many have every name part, and how many each part."""
    names = _recent(after).with_only_columns(Dossier.agency_path, Dossier.applicant_search).subquery("names")
    has = {p: names.c.applicant_search.contains(p, autoescape=True) for p in search.name_parts}
    in_subtree = func.count() if subtree is None else func.count().filter(names.c.agency_path.startswith(subtree))
    return select(
        func.count(), in_subtree, func.count().filter(and_(*has.values())), *map(func.count().filter, has.values())
    )


def candidates_page(query: Select[Any], search: ApplicantQuery, *, indexed: frozenset[str], limit: int) -> Select[Any]:
    """Step 3: the page among the candidates the trigram index gives for the ``indexed`` parts
    (narrowed by the list's own conditions, the desk's subtree among them), the other parts
    checked on each. MATERIALIZED keeps the planner from turning the candidates back into a
    newest-first walk."""
    candidates = (
        query.with_only_columns(Dossier.id, Dossier.received_at)
        .where(*search.conditions(indexed=indexed))
        .cte("candidates")
        .prefix_with("MATERIALIZED")
    )
    newest = select(candidates.c.id).order_by(candidates.c.received_at.desc(), candidates.c.id.desc())
    return newest_page(views.dossier_query().where(Dossier.id.in_(newest.limit(limit + 1))), limit)


def walk_page(query: Select[Any], search: ApplicantQuery, *, paths: tuple[str, ...], limit: int) -> Select[Any]:
    """Step 3 in a small subtree (every part common, or a page expected soon): the newest-first
    walk of each of its agency paths, merged, stopping at a page. The path index holds a copy of
    the folded name, so the parts are checked on its entries and the table is read for the page's
    rows only (and for the list's own filters, if any; and for entries on pages changed since the
    last vacuum, the newest few); the parts are expressions no index covers, so that the planner
    cannot take the trigram index for them (see the module's doc).

    Each path is a branch ordered and limited on its own: PostgreSQL keeps a branch with a WHERE
    as a subquery, and merges subqueries (Merge Append, each read only as far as the merged order
    needs) only when each is ordered; else it read every branch whole and sorted them."""
    keys = query.with_only_columns(Dossier.id, Dossier.received_at).where(*search.conditions(indexed=frozenset()))
    branches = [keys.where(Dossier.agency_path == p).order_by(*NEWEST_FIRST).limit(limit + 1) for p in paths]
    if len(branches) == 1:
        newest = branches[0].with_only_columns(Dossier.id)
    else:
        merged = union_all(*branches).subquery("by_path")
        newest = select(merged.c.id).order_by(merged.c.received_at.desc(), merged.c.id.desc()).limit(limit + 1)
    return newest_page(views.dossier_query().where(Dossier.id.in_(newest)), limit)


async def read_page(
    session: AsyncSession,
    query: Select[Any],
    search: ApplicantQuery,
    *,
    after: ColumnElement[bool] | None,
    limit: int,
    subtree: str | None = None,
) -> list[dict[str, Any]]:
    """A page (``limit`` + 1 rows, newest first) of ``query`` (the list's columns with its scope
    and filters) after the cursor condition ``after``, whose applicant matches ``search``; see
    the module's doc for the steps. ``subtree``: an agency path prefix ``query`` already keeps
    its rows within (the desk's scope), which a walk may then read alone. An ID number, or SQLite
    (embedded mode, small tables): one plain query."""
    plain = newest_page(query.where(*([] if after is None else [after]), *search.conditions()), limit)
    if search.id_number or not search.name_parts or session.get_bind().dialect.name != "postgresql":
        return await fetch_rows(session, plain)
    # Each step is a prepared statement (shared.db.fetch_rows): PostgreSQL plans the first five
    # runs for their own values, then may keep a generic plan that cannot see the LIKE patterns
    # nor the subtree's prefix, and the walk it picks read 5x longer ("Lò Văn" in a ward: 42 ms
    # planned for its values, 190-250 ms generic, measured at 10^6 rows). Planning each time
    # costs a fraction of a millisecond; for this request's transaction only.
    await session.execute(_CUSTOM_PLANS)
    rows = await fetch_rows(session, window_page(query, search, after=after, limit=limit))
    if len(rows) > limit:
        return rows
    size, in_subtree, with_all, *by_part = (
        await session.execute(shares_in_window(search, after=after, subtree=subtree))
    ).one()
    if size < WINDOW:  # the window was every row: its page is the answer
        return rows
    if after is not None:
        query = query.where(after)
    indexed = index_parts({p: n / size for p, n in zip(search.name_parts, by_part, strict=True)})
    # A small subtree's walk reads its own rows only: about a page's worth at the rate the window
    # has them all (not only when every part is common: "Nhung" in a ward, 1.6 % of names, read
    # 2,800 entries in 0.7 ms, its trigram candidates 13 ms), and all of them at worst.
    if (
        subtree is not None
        and in_subtree < SUBTREE_WALKED * size
        and (not indexed or with_all * WALKED >= (limit + 1) * size)
    ):
        paths = tuple((await session.execute(_PATHS_UNDER, {"prefix": subtree})).scalars())
        if not paths:  # no dossier in the subtree (nor then in the list)
            return []
        if len(paths) <= PATHS_WALKED:
            # No parallel workers: blind to how soon a walk meets its page, the planner started
            # workers for each path of a merged walk (7 ms each: 71 ms for 9 paths, 3 ms without).
            await session.execute(_NO_WORKERS)
            return await fetch_rows(session, walk_page(query, search, paths=paths, limit=limit))
    if indexed:
        return await fetch_rows(session, candidates_page(query, search, indexed=indexed, limit=limit))
    # every part common (or too short to index): the newest-first walk of the table stops early
    return await fetch_rows(session, plain)
