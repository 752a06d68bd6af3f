"""path index carries the folded applicant name for walks in a subtree

The index of an agency path's dossiers newest first (``agency_path`` with pattern ops,
``received_at``, ``id``) also holds ``applicant_search`` (INCLUDE, PostgreSQL's own; SQLite keeps
the plain index): a name search in a small subtree walks the subtree's paths newest first and
checks the name parts on the index's entries, reading the table for the page's rows only
(``services.intake.applicant_search.walk_page``; "Lò Văn" in a ward at 10^6 dossiers: 3,900
entries in under a millisecond, where the walk of the whole table read 80,000 rows in 30-70 ms).
It replaces ``ix_dossier_path_received``, whose other uses (a subtree's range, ANDed with the
trigram candidates) it serves the same way.

Revision ID: 219498457238
Revises: c6de26a755e9
Create Date: 2026-12-04 17:04:20.285736
"""

from collections.abc import Sequence

from alembic import op

revision: str = "219498457238"
down_revision: str | None = "c6de26a755e9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["agency_path", "received_at", "id"]
PATTERN_OPS = {"agency_path": "varchar_pattern_ops"}


def upgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dossier_path_received_applicant",
            COLUMNS,
            unique=False,
            postgresql_ops=PATTERN_OPS,
            postgresql_include=["applicant_search"],
        )
        batch_op.drop_index("ix_dossier_path_received")


def downgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.create_index("ix_dossier_path_received", COLUMNS, unique=False, postgresql_ops=PATTERN_OPS)
        batch_op.drop_index("ix_dossier_path_received_applicant")
