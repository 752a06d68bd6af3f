"""list indexes: the dossier lists' order, and applicant search on PostgreSQL

Revision ID: 15092952390a
Revises: 8db09c3bab02
Create Date: 2026-11-28 05:27:51.370370
"""

from collections.abc import Sequence

from alembic import op

revision: str = "15092952390a"
down_revision: str | None = "8db09c3bab02"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Lists are newest first with a (received_at, id) cursor: read backwards, this index gives
    # a page without sorting the subtree, which a LIKE on agency_path cannot.
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.create_index("ix_dossier_received", ["received_at", "id"], unique=False)
    # The applicant filter is LIKE '%word%' on the folded applicant_search; on PostgreSQL a
    # trigram index serves it (SQLite scans, fine for embedded mode).
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_dossier_applicant_trgm ON dossier USING gin (applicant_search gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_dossier_applicant_trgm")
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_index("ix_dossier_received")
