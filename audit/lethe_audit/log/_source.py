"""Reading tree nodes back from the database for proofs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from lethe_audit.errors import StoreError
from lethe_audit.store import TlogEntry, TlogNode
from lethe_audit.tlog import NodeID

#: Keep IN lists comfortably below every driver's parameter limit.
_CHUNK = 500


class DatabaseHashSource:
    """A :class:`lethe_audit.tlog.HashSource` over ``tlog_entries`` (leaves) and ``tlog_nodes``.

    A proof at 10^6 entries needs a few dozen nodes, fetched in two indexed queries.
    """

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def node_hashes(self, ids: Sequence[NodeID]) -> list[bytes]:
        got: dict[NodeID, bytes] = {}
        leaves = sorted({i for level, i in ids if level == 0})
        by_level: dict[int, list[int]] = defaultdict(list)
        for level, i in set(ids):
            if level > 0:
                by_level[level].append(i)
        for start in range(0, len(leaves), _CHUNK):
            part = leaves[start : start + _CHUNK]
            q = select(TlogEntry.idx, TlogEntry.leaf_hash).where(TlogEntry.idx.in_(part))
            for idx, h in self._conn.execute(q):
                got[(0, idx)] = h
        if by_level:
            cond = or_(
                *(
                    and_(TlogNode.level == level, TlogNode.idx.in_(sorted(idxs)))
                    for level, idxs in by_level.items()
                )
            )
            for level, idx, h in self._conn.execute(
                select(TlogNode.level, TlogNode.idx, TlogNode.hash).where(cond)
            ):
                got[(level, idx)] = h
        missing = [n for n in ids if n not in got]
        if missing:
            raise StoreError(
                f"the stored tree lacks nodes {missing[:5]}: the database is damaged or was "
                "edited; export a bundle and verify it"
            )
        return [got[n] for n in ids]
