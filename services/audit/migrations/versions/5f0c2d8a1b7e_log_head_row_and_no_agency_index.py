"""the log's head in one row; no index on agency

Revision ID: 5f0c2d8a1b7e
Revises: e8bbb94e8c0c
Create Date: 2026-12-04 02:55:00.000000

Appenders read the head (size and frontier hashes) from ``audit_log_head`` instead of
``max(idx)`` and the frontier nodes; an existing log's head is computed here from its nodes.
The agency index goes: the entries API filters agencies with a LIKE that begins with wildcards.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5f0c2d8a1b7e"
down_revision: str | None = "e8bbb94e8c0c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _frontier_keys(size: int) -> list[tuple[int, int]]:
    # One complete subtree per set bit of the size, left to right (merkle.frontier_keys, kept
    # here so the migration does not change when the service's code does).
    keys, lo = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            keys.append((level, lo >> level))
            lo += 1 << level
    return keys


def upgrade() -> None:
    head = op.create_table(
        "audit_log_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_log_head_one_row")),
        sa.CheckConstraint("size >= 0", name=op.f("ck_audit_log_head_size_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log_head")),
    )
    bind = op.get_bind()
    last = bind.execute(sa.text("SELECT max(idx) FROM audit_merkle_node WHERE level = 0")).scalar()
    size = 0 if last is None else int(last) + 1
    frontier = []
    for level, idx in _frontier_keys(size):
        value = bind.execute(
            sa.text("SELECT hash FROM audit_merkle_node WHERE level = :level AND idx = :idx"),
            {"level": level, "idx": idx},
        ).scalar()
        if value is None:
            raise RuntimeError(f"the audit log of size {size} lacks its tree node ({level}, {idx})")
        frontier.append(bytes(value))
    op.bulk_insert(head, [{"id": 1, "size": size, "frontier": b"".join(frontier)}])

    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entry_agency")


def downgrade() -> None:
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index("ix_audit_entry_agency", ["agency"], unique=False)

    op.drop_table("audit_log_head")
