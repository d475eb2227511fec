"""Extension requests (延期申请): the unit asks, the dispatcher approves or refuses.

Four nullable columns on assignments hold the pending request; decisions are audit events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('assignments') as batch:
        batch.add_column(sa.Column('extension_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('extension_requested_by', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('extension_request_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('extension_request_deadline', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('assignments') as batch:
        batch.drop_column('extension_request_deadline')
        batch.drop_column('extension_request_reason')
        batch.drop_column('extension_requested_by')
        batch.drop_column('extension_requested_at')
