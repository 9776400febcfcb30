"""The transfer register's statements, for both SQL stores (a mixin of ``SqlTransaction``,
whose ``_execute`` it uses). Its writers hold the source's lock (``apply.REGISTER``), so
a read, a compare and a write see no other writer between them."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from gateway.domain.changes import Transfer
from gateway.domain.model import link_claim

from . import rows, tables

_transfers = tables.transfers.c


class TransfersTransaction:
    def record_transfer(self, transfer: Transfer, now: datetime) -> None:
        held = {row.account: row.to_user for row in self._execute(self._from(transfer.source, transfer.from_accounts)
                                                                   .where(_transfers.as_of == transfer.as_of))}
        for account in sorted(set(transfer.from_accounts)):
            values = {"source": transfer.source, "account": account, "as_of": transfer.as_of,
                      "to_user": transfer.to_user, "store": transfer.store, "environment": transfer.environment,
                      "created_at": now}
            if account not in held:
                self._execute(sa.insert(tables.transfers).values(values))
            elif link_claim(transfer.as_of, transfer.to_user) > link_claim(transfer.as_of, held[account]):
                self._execute(sa.update(tables.transfers).values(values).where(
                    _transfers.source == transfer.source, _transfers.account == account,
                    _transfers.as_of == transfer.as_of))

    def transfers_from(self, source: str, accounts: list[str]) -> list[Transfer]:
        found = self._execute(self._from(source, accounts).order_by(_transfers.as_of, _transfers.account))
        return [Transfer(source, (row.account,), row.to_user, rows.utc(row.as_of), row.store, row.environment)
                for row in found]

    @staticmethod
    def _from(source: str, accounts) -> sa.Select:
        return sa.select(_transfers.account, _transfers.as_of, _transfers.to_user, _transfers.store,
                         _transfers.environment).where(
            _transfers.source == source, _transfers.account.in_(list(accounts)))
