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
    _keep_results_already_applied()


def _keep_results_already_applied() -> None:
    """Dossiers finished before this revision name their document in ``result``: it becomes an
    applied issued result, so that the same document issued again is recognised as such."""
    at = shared.db.UtcDateTime(timezone=True)
    dossier = sa.table(
        "dossier", sa.column("id", sa.Integer), sa.column("result", sa.JSON), sa.column("finished_at", at)
    )
    issued = sa.table(
        "issued_result",
        *(sa.column(name, sa.Integer) for name in ("dossier_id", "document_id")),
        *(sa.column(name, sa.String) for name in ("number", "content_sha256", "download_path")),
        sa.column("summary", sa.Text),
        *(sa.column(name, at) for name in ("learnt_at", "applied_at")),
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(dossier.c.id, dossier.c.result, dossier.c.finished_at)
            .where(dossier.c.id > last, dossier.c.finished_at.is_not(None))
            .order_by(dossier.c.id)
            .limit(5000)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        values = [
            {
                "dossier_id": row.id,
                "document_id": row.result["document_id"],
                "number": (row.result.get("number") or None) and str(row.result["number"])[:60],
                "content_sha256": row.result.get("content_sha256"),
                "download_path": row.result.get("download_path"),
                "summary": row.result.get("summary"),
                "learnt_at": row.finished_at,
                "applied_at": row.finished_at,
            }
            for row in rows
            if isinstance(row.result, dict) and isinstance(row.result.get("document_id"), int)
        ]
        if values:
            bind.execute(sa.insert(issued), values)


def downgrade() -> None:
    with op.batch_alter_table("dossier", schema=None) as batch_op:
        batch_op.drop_column("lookup_secret_sealed")

    with op.batch_alter_table("issued_result", schema=None) as batch_op:
        batch_op.drop_index("ix_issued_result_pending")
        batch_op.drop_index(batch_op.f("ix_issued_result_dossier_id"))

    op.drop_table("issued_result")
