"""applicant ID number key for exact look-up; applicant_search holds the name only

The ID number was searched as a fragment of ``applicant_search`` (name + ID, folded) through the
trigram index: 24 ms at 10^6 rows, since every CCCD of the province starts with the same digits.
It gets its own column, looked up exactly through a btree, and ``applicant_search`` keeps the
folded name only. Existing rows are rewritten in batches with the same folding the service uses
(``services.intake.applicant_search``: ``shared.text.fold`` for the name, folded letters and
digits for the ID number), written out here so that this revision keeps meaning what it did.

Revision ID: c6de26a755e9
Revises: 0082dff8332d
Create Date: 2026-12-04 02:01:57.936606
"""

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from shared.text import fold, tokens

revision: str = "c6de26a755e9"
down_revision: str | None = "0082dff8332d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000

dossier = sa.table(
    "dossier",
    sa.column("id", sa.Integer),
    sa.column("applicant", sa.JSON),
    sa.column("applicant_search", sa.String),
    sa.column("applicant_id_number", sa.String),
)


def _applicant(stored: dict | str) -> dict:
    return json.loads(stored) if isinstance(stored, str) else stored


def _keys(stored: dict | str) -> dict[str, str | None]:
    applicant = _applicant(stored)
    return {
        "name": fold(applicant.get("full_name") or "")[:500],
        "id_number": "".join(tokens(applicant.get("id_number") or "")) or None,
    }


def _joined_key(stored: dict | str) -> dict[str, str]:
    applicant = _applicant(stored)
    return {"key": fold(" ".join(filter(None, [applicant.get("full_name"), applicant.get("id_number")])))[:500]}


def _rewrite(bind: sa.Connection, update: sa.Update, values_of: Callable[[dict | str], dict]) -> None:
    """Every dossier's search keys rewritten from its applicant, ``BATCH`` rows at a time."""
    last = 0
    while True:
        rows = bind.execute(
            sa.select(dossier.c.id, dossier.c.applicant).where(dossier.c.id > last).order_by(dossier.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(update, [{"row_id": r.id, **values_of(r.applicant)} for r in rows])
        last = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applicant_id_number", sa.String(length=20), nullable=True))
    bind = op.get_bind()
    _rewrite(
        bind,
        dossier.update()
        .where(dossier.c.id == sa.bindparam("row_id"))
        .values(applicant_search=sa.bindparam("name"), applicant_id_number=sa.bindparam("id_number")),
        _keys,
    )
    # created after the rewrite: one build instead of an index entry per rewritten row
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.create_index("ix_dossier_applicant_id_number", ["applicant_id_number"], unique=False)
    if bind.dialect.name == "postgresql":
        # GIN's fast update parks new entries in a pending list that every search reads through
        # (up to 4 MB) until a vacuum merges it; a dossier's few trigrams are cheap to insert
        # directly at the rate dossiers arrive.
        op.execute("ALTER INDEX ix_dossier_applicant_trgm SET (fastupdate = off)")
        op.execute("SELECT gin_clean_pending_list('ix_dossier_applicant_trgm')")
        # LIKE '/H56/41/%' (an agency's subtree) can use a btree only with pattern ops unless the
        # database's collation is "C": with them a desk's subtree narrows the trigram candidates
        op.execute("DROP INDEX ix_dossier_path_received")
        op.execute(
            "CREATE INDEX ix_dossier_path_received ON dossier (agency_path varchar_pattern_ops, received_at, id)"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER INDEX ix_dossier_applicant_trgm RESET (fastupdate)")
        op.execute("DROP INDEX ix_dossier_path_received")
        op.execute("CREATE INDEX ix_dossier_path_received ON dossier (agency_path, received_at, id)")
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_index("ix_dossier_applicant_id_number")
    # the name and the ID number in one search key again, as before this revision
    _rewrite(
        bind,
        dossier.update().where(dossier.c.id == sa.bindparam("row_id")).values(applicant_search=sa.bindparam("key")),
        _joined_key,
    )
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_column("applicant_id_number")
