"""issued results kept until they apply; receipt secrets kept sealed

Revision ID: 0bb1b3d9eb00
Revises: 15092952390a
Create Date: 2026-12-03 22:36:32.519385
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0bb1b3d9eb00"
down_revision: str | None = "15092952390a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A result issued for a dossier is kept (pending) until the dossier's status takes it; the
    # receipt's look-up secret is kept sealed so that printing the receipt again shows it.
    op.create_table(
        "issued_result",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dossier_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=60), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("download_path", sa.String(length=300), nullable=True),
        sa.Column("issued_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("learnt_at", shared.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", shared.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossier.id"], name=op.f("fk_issued_result_dossier_id_dossier")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issued_result")),
        sa.UniqueConstraint("dossier_id", "document_id", name="uq_issued_result_dossier_document"),
    )
    with op.batch_alter_table("issued_result", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issued_result_dossier_id"), ["dossier_id"], unique=False)
        batch_op.create_index("ix_issued_result_pending", ["applied_at", "dossier_id"], unique=False)

    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lookup_secret_sealed", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_column("lookup_secret_sealed")

    with op.batch_alter_table("issued_result", schema=None) as batch_op:
        batch_op.drop_index("ix_issued_result_pending")
        batch_op.drop_index(batch_op.f("ix_issued_result_dossier_id"))

    op.drop_table("issued_result")
