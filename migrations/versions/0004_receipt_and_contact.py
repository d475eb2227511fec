"""Receipt (签收), first contact (先行联系) and the unit's reply time of a dispatch; a draft's 处理措施.

Six nullable columns on assignments and one on reply_drafts; the steps themselves are audit events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('assignments') as batch:
        batch.add_column(sa.Column('received_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('received_by', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('contacted_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('contacted_by', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('contact_note', sa.Text(), nullable=True))
        batch.add_column(sa.Column('replied_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('reply_drafts') as batch:
        batch.add_column(sa.Column('actions', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reply_drafts') as batch:
        batch.drop_column('actions')
    with op.batch_alter_table('assignments') as batch:
        batch.drop_column('replied_at')
        batch.drop_column('contact_note')
        batch.drop_column('contacted_by')
        batch.drop_column('contacted_at')
        batch.drop_column('received_by')
        batch.drop_column('received_at')
