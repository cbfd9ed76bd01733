"""Initial schema: accounts, payouts, orders, ads, chat, receipts, rates, side effects, events, settings.

Hand-checked autogenerate output; the custom column types come from orchestrator.models so SQLite and
PostgreSQL get the same exact-decimal and UTC behaviour as the ORM.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 13:56:28.109587
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from orchestrator.models import JsonDoc, Money, UtcDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bybit_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('api_key', sa.String(length=200), nullable=False),
    sa.Column('api_secret_enc', sa.Text(), nullable=True),
    sa.Column('testnet', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('bybit_user_id', sa.String(length=64), nullable=True),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bybit_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_bybit_accounts_name'))
    )
    op.create_table('gate_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=200), nullable=False),
    sa.Column('password_enc', sa.Text(), nullable=True),
    sa.Column('cookies_enc', sa.Text(), nullable=True),
    sa.Column('gate_user_id', sa.String(length=64), nullable=True),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_accounts')),
    sa.UniqueConstraint('login', name=op.f('uq_gate_accounts_login'))
    )
    op.create_table('settings',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gate_account_id', sa.Integer(), nullable=False),
    sa.Column('gate_payout_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('wallet', sa.String(length=64), nullable=True),
    sa.Column('bank_name', sa.String(length=64), nullable=True),
    sa.Column('bank_label', sa.String(length=200), nullable=True),
    sa.Column('amount_rub', Money(), nullable=True),
    sa.Column('amount_usdt', Money(), nullable=True),
    sa.Column('course', Money(), nullable=True),
    sa.Column('gate_created_at', UtcDateTime(), nullable=True),
    sa.Column('accepted_at', UtcDateTime(), nullable=True),
    sa.Column('expired_at', UtcDateTime(), nullable=True),
    sa.Column('raw', JsonDoc, nullable=True),
    sa.Column('first_seen_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['gate_account_id'], ['gate_accounts.id'], name=op.f('fk_payouts_gate_account_id_gate_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('gate_account_id', 'gate_payout_id', name=op.f('uq_payouts_gate_account_id_gate_payout_id'))
    )
    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('bybit_account_id', sa.Integer(), nullable=True),
    sa.Column('bybit_order_id', sa.String(length=64), nullable=True),
    sa.Column('buyer_user_id', sa.String(length=64), nullable=True),
    sa.Column('chat_step', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('review_from', sa.String(length=24), nullable=True),
    sa.Column('review_reason', sa.Text(), nullable=True),
    sa.Column('operator_approved_by', sa.String(length=100), nullable=True),
    sa.Column('operator_approved_at', UtcDateTime(), nullable=True),
    sa.Column('requisites_sent_at', UtcDateTime(), nullable=True),
    sa.Column('gate_approved_at', UtcDateTime(), nullable=True),
    sa.Column('released_at', UtcDateTime(), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.Column('state_changed_at', UtcDateTime(), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.ForeignKeyConstraint(['bybit_account_id'], ['bybit_accounts.id'], name=op.f('fk_orders_bybit_account_id_bybit_accounts')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_orders_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('bybit_order_id', name=op.f('uq_orders_bybit_order_id')),
    sa.UniqueConstraint('payout_id', name=op.f('uq_orders_payout_id'))
    )
    op.create_index(op.f('ix_orders_state'), 'orders', ['state'], unique=False)

    op.create_table('ads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bybit_item_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('bybit_account_id', sa.Integer(), nullable=False),
    sa.Column('payment_kind', sa.String(length=16), nullable=False),
    sa.Column('payment_id', sa.String(length=64), nullable=True),
    sa.Column('price', Money(), nullable=False),
    sa.Column('quantity', Money(), nullable=False),
    sa.Column('amount_rub', Money(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request', JsonDoc, nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['bybit_account_id'], ['bybit_accounts.id'], name=op.f('fk_ads_bybit_account_id_bybit_accounts')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_ads_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ads')),
    sa.UniqueConstraint('bybit_item_id', name=op.f('uq_ads_bybit_item_id'))
    )
    op.create_index(op.f('ix_ads_bybit_account_id'), 'ads', ['bybit_account_id'], unique=False)
    op.create_index(op.f('ix_ads_order_id'), 'ads', ['order_id'], unique=False)
    op.create_index('uq_ads_one_live_per_order', 'ads', ['order_id'], unique=True, sqlite_where=sa.text("status = 'live'"), postgresql_where=sa.text("status = 'live'"))

    op.create_table('chat_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('bybit_message_id', sa.String(length=64), nullable=True),
    sa.Column('msg_uuid', sa.String(length=64), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('chat_step', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('content_type', sa.String(length=16), nullable=False),
    sa.Column('sent_at', UtcDateTime(), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('raw', JsonDoc, nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_chat_messages_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_messages')),
    sa.UniqueConstraint('msg_uuid', name=op.f('uq_chat_messages_msg_uuid')),
    sa.UniqueConstraint('order_id', 'bybit_message_id', name=op.f('uq_chat_messages_order_id_bybit_message_id'))
    )
    op.create_index(op.f('ix_chat_messages_order_id'), 'chat_messages', ['order_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', UtcDateTime(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('from_state', sa.String(length=24), nullable=True),
    sa.Column('to_state', sa.String(length=24), nullable=True),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('data', JsonDoc, nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_events_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    op.create_index(op.f('ix_events_order_id'), 'events', ['order_id'], unique=False)
    op.create_index(op.f('ix_events_ts'), 'events', ['ts'], unique=False)

    op.create_table('rates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', UtcDateTime(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('rule', sa.String(length=100), nullable=False),
    sa.Column('page', sa.Integer(), nullable=False),
    sa.Column('ad_index', sa.Integer(), nullable=False),
    sa.Column('raw_price', Money(), nullable=False),
    sa.Column('result', Money(), nullable=False),
    sa.Column('amount_rub', Money(), nullable=True),
    sa.Column('data', JsonDoc, nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_rates_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rates'))
    )
    op.create_index(op.f('ix_rates_at'), 'rates', ['at'], unique=False)
    op.create_index(op.f('ix_rates_order_id'), 'rates', ['order_id'], unique=False)

    op.create_table('receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('receipt_number', sa.String(length=64), nullable=True),
    sa.Column('operation_id', sa.String(length=64), nullable=True),
    sa.Column('email_message_id', sa.String(length=300), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('sender', sa.String(length=200), nullable=True),
    sa.Column('dkim', sa.String(length=8), nullable=True),
    sa.Column('ocr', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('amount_rub', Money(), nullable=True),
    sa.Column('receipt_time', UtcDateTime(), nullable=True),
    sa.Column('parsed', JsonDoc, nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('reasons', JsonDoc, nullable=True),
    sa.Column('used_by_order_id', sa.Integer(), nullable=True),
    sa.Column('filename', sa.String(length=200), nullable=True),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('received_at', UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['used_by_order_id'], ['orders.id'], name=op.f('fk_receipts_used_by_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_receipts')),
    sa.UniqueConstraint('email_message_id', name=op.f('uq_receipts_email_message_id')),
    sa.UniqueConstraint('operation_id', name=op.f('uq_receipts_operation_id')),
    sa.UniqueConstraint('receipt_number', name=op.f('uq_receipts_receipt_number')),
    sa.UniqueConstraint('sha256', name=op.f('uq_receipts_sha256')),
    sa.UniqueConstraint('used_by_order_id', name=op.f('uq_receipts_used_by_order_id'))
    )
    op.create_table('side_effects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('target_key', sa.String(length=200), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request', JsonDoc, nullable=True),
    sa.Column('outcome', JsonDoc, nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.Column('completed_at', UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_side_effects_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_side_effects')),
    sa.UniqueConstraint('kind', 'target_key', name=op.f('uq_side_effects_kind_target_key'))
    )
    op.create_index(op.f('ix_side_effects_order_id'), 'side_effects', ['order_id'], unique=False)
    op.create_index(op.f('ix_side_effects_status'), 'side_effects', ['status'], unique=False)



def downgrade() -> None:
    # Dropping a table drops its indexes; children first.
    op.drop_table('side_effects')
    op.drop_table('receipts')
    op.drop_table('rates')
    op.drop_table('events')
    op.drop_table('chat_messages')
    op.drop_table('ads')
    op.drop_table('orders')
    op.drop_table('payouts')
    op.drop_table('settings')
    op.drop_table('gate_accounts')
    op.drop_table('bybit_accounts')
