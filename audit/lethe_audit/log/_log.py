"""The audit log service: append, prove, export."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from lethe_audit.errors import LetheAuditError, LogStateError, StoreError
from lethe_audit.log._keys import KEY_COLUMNS, KeyRecord
from lethe_audit.log._source import DatabaseHashSource
from lethe_audit.note import Signer, Verifier
from lethe_audit.statements import (
    Envelope,
    EventType,
    LifecycleEvent,
    Statement,
    UnlearningAttestation,
    VariantAttestation,
    rfc3339,
    sign_statement,
    validate_statement,
    verify_envelope,
)
from lethe_audit.store import (
    READ_ONLY,
    TlogCheckpoint,
    TlogEntry,
    TlogHead,
    TlogKey,
    TlogNode,
    check_schema,
    create_engine,
)
from lethe_audit.tlog import (
    EMPTY_ROOT,
    Checkpoint,
    CompactRange,
    TlogProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    sign_checkpoint,
    verify_inclusion,
)

#: What :meth:`AuditLog.append` takes: a statement (signed by the log's keys) or a ready
#: envelope (which must be signed by the log's keys).
Appendable = Statement | UnlearningAttestation | VariantAttestation | LifecycleEvent | Envelope

#: Steps of an append, in order; the private ``_fault`` hook is called after each (tests).
APPEND_STEPS = ("locked", "entries", "nodes", "signed", "checkpoint", "head", "commit")

T = TypeVar("T")


@dataclass(frozen=True)
class AppendResult:
    """Where an entry landed: its ``index``, and the signed checkpoint (of ``size``) covering it.

    ``duplicate`` is True when the envelope was already logged (a retried append): ``index``
    is then the existing entry's.
    """

    index: int
    leaf_hash: bytes
    size: int
    checkpoint: str
    duplicate: bool = False


@dataclass(frozen=True)
class _Prepared:
    envelope: bytes
    leaf: bytes
    predicate_type: str


@dataclass(frozen=True)
class _Head:
    origin: str
    size: int
    compact: bytes
    checkpoint: str


_HEAD_COLUMNS = (TlogHead.origin, TlogHead.size, TlogHead.compact, TlogHead.checkpoint)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _existing_leaves(conn: Connection, leaves: Sequence[bytes]) -> dict[bytes, int]:
    """Index of every already-logged leaf among ``leaves`` (a retried append is a duplicate)."""
    existing: dict[bytes, int] = {}
    for start in range(0, len(leaves), 500):
        q = select(TlogEntry.leaf_hash, TlogEntry.idx).where(
            TlogEntry.leaf_hash.in_(leaves[start : start + 500])
        )
        existing.update({h: i for h, i in conn.execute(q)})
    return existing


def _place(
    conn: Connection, prepared: Sequence[_Prepared], compact: CompactRange, now: datetime
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[tuple[int, bytes, bool]]]:
    """Give each new envelope the next index (appending its leaf to ``compact``): the entry
    rows, the tree-node rows to insert, and (index, leaf, duplicate) for every item."""
    existing = _existing_leaves(conn, list({p.leaf for p in prepared}))
    entry_rows: list[dict[str, object]] = []
    node_rows: list[dict[str, object]] = []
    placed: list[tuple[int, bytes, bool]] = []
    for p in prepared:
        if p.leaf in existing:
            placed.append((existing[p.leaf], p.leaf, True))
            continue
        index = compact.size
        compact.append(
            p.leaf,
            on_node=lambda level, idx, h: node_rows.append({"level": level, "idx": idx, "hash": h}),
        )
        entry_rows.append(
            {
                "idx": index,
                "leaf_hash": p.leaf,
                "envelope": p.envelope,
                "predicate_type": p.predicate_type,
                "appended_at": now,
            }
        )
        existing[p.leaf] = index
        placed.append((index, p.leaf, False))
    return entry_rows, node_rows, placed


class AuditLog:
    """A signed, append-only transparency log in a SQL database (SQLite or PostgreSQL).

    ``signers`` are the log's active keys (all of them: each checkpoint and entry is signed by
    every active key, which is what makes a key rotation's overlap work). Reading, proving and
    exporting need no signers.

    Every method that writes takes an optional ``session`` (SQLAlchemy ``Session`` or
    ``Connection`` on an engine from :func:`lethe_audit.store.create_engine`): the write then
    joins the caller's transaction and the caller commits; otherwise it commits its own.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        signers: Sequence[Signer] = (),
        verify_schema: bool = True,
        _fault: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._signers = list(signers)
        if len({s.vkey for s in self._signers}) != len(self._signers):
            raise LogStateError("the same signer was given twice")
        self._fault = _fault or (lambda _step: None)
        if verify_schema:
            check_schema(engine)

    @classmethod
    def open(cls, url: str | URL | Engine, *, signers: Sequence[Signer] = ()) -> AuditLog:
        """Open the log in the database at ``url`` (which must be migrated to head)."""
        engine = url if isinstance(url, Engine) else create_engine(url)
        return cls(engine, signers=signers)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def signers(self) -> tuple[Signer, ...]:
        return tuple(self._signers)

    # -- transactions ------------------------------------------------------------------------

    def _write(self, session: Session | Connection | None, fn: Callable[[Connection], T]) -> T:
        try:
            if session is None:
                with self._engine.begin() as conn:
                    result = fn(conn)
                    self._fault("commit")
                return result
            conn = session.connection() if isinstance(session, Session) else session
            return fn(conn)
        except LetheAuditError:
            raise
        except SQLAlchemyError as e:
            raise StoreError(f"log write failed, nothing was committed: {e}") from e

    def _read(self, fn: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        opts: dict[str, object] = {READ_ONLY: True}
        if snapshot and self._engine.dialect.name == "postgresql":
            opts["isolation_level"] = "REPEATABLE READ"
        try:
            with self._engine.connect().execution_options(**opts) as conn, conn.begin():
                return fn(conn)
        except LetheAuditError:
            raise
        except SQLAlchemyError as e:
            raise StoreError(f"log read failed: {e}") from e

    @staticmethod
    def _lock_head(conn: Connection) -> _Head:
        row = conn.execute(select(*_HEAD_COLUMNS).where(TlogHead.id == 1).with_for_update()).first()
        if row is None:
            raise LogStateError(
                "the log is not initialised: run `lethe-audit log init --db URL --keys DIR`"
            )
        return _Head(*row)

    def _check_signers(self, conn: Connection, extra: Sequence[Signer] = ()) -> None:
        active = set(conn.execute(select(TlogKey.vkey).where(TlogKey.status == "active")).scalars())
        mine = {s.vkey for s in (*self._signers, *extra)}
        if not mine:
            raise LogStateError("this AuditLog has no signers: load the log's active keys")
        unknown = mine - active
        if unknown:
            raise LogStateError(
                f"keys {sorted(unknown)} are not active keys of this log (add them with "
                "`lethe-audit keys rotate`)"
            )
        missing = active - mine
        if missing:
            raise LogStateError(
                f"active log keys {sorted(missing)} are not loaded: every active key signs "
                "(load all active keys of the keyring)"
            )

    # -- setup -------------------------------------------------------------------------------

    def initialize(
        self, *, origin: str | None = None, session: Session | Connection | None = None
    ) -> str:
        """Create the empty log: head at size 0, signers registered, first checkpoint signed.

        ``origin`` defaults to the signers' key name (C2SP recommends they match).
        Returns the size-0 checkpoint.
        """
        if not self._signers:
            raise LogStateError("initialising a log needs its signing key(s)")
        origin = origin or self._signers[0].name
        cp = Checkpoint(origin=origin, size=0, root=EMPTY_ROOT)
        note_text = sign_checkpoint(cp, self._signers)

        def run(conn: Connection) -> str:
            if conn.execute(select(TlogHead.id)).first() is not None:
                raise LogStateError("the log is already initialised")
            now = _utcnow()
            conn.execute(
                insert(TlogKey),
                [
                    {
                        "vkey": s.vkey,
                        "name": s.name,
                        "key_id": f"{s.key_id:08x}",
                        "status": "active",
                        "added_at_size": 0,
                        "retired_at_size": None,
                        "added_at": now,
                        "retired_at": None,
                    }
                    for s in self._signers
                ],
            )
            conn.execute(
                insert(TlogCheckpoint).values(
                    size=0, root=EMPTY_ROOT, note=note_text, created_at=now
                )
            )
            conn.execute(
                insert(TlogHead).values(
                    id=1,
                    origin=origin,
                    size=0,
                    root=EMPTY_ROOT,
                    compact=b"",
                    checkpoint=note_text,
                    updated_at=now,
                )
            )
            return note_text

        try:
            return self._write(session, run)
        except StoreError as e:
            if isinstance(e.__cause__, IntegrityError):
                raise LogStateError("the log is already initialised") from None
            raise

    # -- appending ---------------------------------------------------------------------------

    def _prepare(self, item: Appendable, signers: Sequence[Signer]) -> _Prepared:
        if isinstance(item, (UnlearningAttestation, VariantAttestation, LifecycleEvent)):
            item = item.to_statement()
        if isinstance(item, Statement):
            if not signers:
                raise LogStateError("appending a statement needs the log's signing keys")
            env = sign_statement(item, signers)
        elif isinstance(item, Envelope):
            env = item
            verify_envelope(
                env, [s.verifier() for s in signers] or self.verifiers(active_only=True)
            )
            validate_statement(Statement.from_envelope(env))
        else:
            raise TypeError(f"cannot append a {type(item).__name__}")
        data = env.to_json()
        st = Statement.from_envelope(env)
        return _Prepared(data, leaf_hash(data), st.predicate_type)

    def append(
        self, item: Appendable, *, session: Session | Connection | None = None
    ) -> AppendResult:
        """Log one statement (or envelope); returns its index and covering checkpoint.

        In one transaction: lock the head, add the leaf and the interior nodes it completes,
        compute the new root, sign and store the checkpoint, move the head. Signing is
        deterministic, so retrying the same statement after an unknown commit outcome finds
        the existing entry instead of logging it twice (``duplicate=True``).
        """
        prepared = self._prepare(item, self._signers)
        return self._write(session, lambda conn: self._append_locked(conn, [prepared]))[0]

    def append_many(
        self,
        items: Iterable[Appendable],
        *,
        session: Session | Connection | None = None,
    ) -> list[AppendResult]:
        """Log several entries in one transaction with one checkpoint at the end."""
        prepared = [self._prepare(i, self._signers) for i in items]
        if not prepared:
            return []
        return self._write(session, lambda conn: self._append_locked(conn, prepared))

    def _append_locked(
        self,
        conn: Connection,
        prepared: Sequence[_Prepared],
        *,
        signers: Sequence[Signer] | None = None,
        before_head: Callable[[Connection, int], None] | None = None,
    ) -> list[AppendResult]:
        signers = self._signers if signers is None else signers
        head = self._lock_head(conn)
        self._fault("locked")
        if signers is self._signers:
            self._check_signers(conn)
        compact = CompactRange.from_bytes(head.size, head.compact)
        now = _utcnow()
        entry_rows, node_rows, placed = _place(conn, prepared, compact, now)
        if not entry_rows:
            return [AppendResult(i, h, head.size, head.checkpoint, dup) for i, h, dup in placed]
        conn.execute(insert(TlogEntry), entry_rows)
        self._fault("entries")
        if node_rows:
            conn.execute(insert(TlogNode), node_rows)
        self._fault("nodes")
        new_root = compact.root()
        cp = Checkpoint(origin=head.origin, size=compact.size, root=new_root)
        note_text = sign_checkpoint(cp, signers)
        self._fault("signed")
        conn.execute(
            insert(TlogCheckpoint).values(
                size=cp.size, root=new_root, note=note_text, created_at=now
            )
        )
        self._fault("checkpoint")
        if before_head is not None:
            before_head(conn, cp.size)
        moved = conn.execute(
            update(TlogHead)
            .where(TlogHead.id == 1, TlogHead.size == head.size)
            .values(
                size=cp.size,
                root=new_root,
                compact=compact.to_bytes(),
                checkpoint=note_text,
                updated_at=now,
            )
        )
        if moved.rowcount != 1:
            raise StoreError("the tree head moved while locked: another writer bypassed the lock")
        self._fault("head")
        return [AppendResult(i, h, cp.size, note_text, dup) for i, h, dup in placed]

    # -- keys --------------------------------------------------------------------------------

    def signing_keys(self) -> list[KeyRecord]:
        """Every key the log has used, oldest first."""

        def run(conn: Connection) -> list[KeyRecord]:
            rows = conn.execute(
                select(*KEY_COLUMNS).order_by(TlogKey.added_at_size, TlogKey.added_at)
            )
            return [KeyRecord(*r) for r in rows]

        return self._read(run)

    def verifiers(self, *, active_only: bool = False) -> list[Verifier]:
        return [
            k.verifier() for k in self.signing_keys() if not active_only or k.status == "active"
        ]

    def add_key(
        self, signer: Signer, *, session: Session | Connection | None = None
    ) -> AppendResult:
        """Start a key rotation: register ``signer`` as active (old and new keys now both
        sign) and log a ``key.rotated`` event (action ``added``) signed by both.

        This object signs with the new key from now on; if a caller's ``session`` is rolled
        back instead of committed, open a new AuditLog with the old keys."""
        if signer.vkey in {s.vkey for s in self._signers}:
            raise LogStateError(f"key {signer.key_hint} is already one of this log's signers")
        signers = [*self._signers, signer]

        def run(conn: Connection) -> AppendResult:
            self._lock_head(conn)
            self._check_signers(conn)
            if conn.execute(select(TlogKey.vkey).where(TlogKey.vkey == signer.vkey)).first():
                raise LogStateError(f"key {signer.key_hint} was already used by this log")
            event = LifecycleEvent(
                EventType.KEY_ROTATED,
                rfc3339(_utcnow()),
                details={
                    "action": "added",
                    "key": signer.vkey,
                    "active": sorted(s.vkey for s in signers),
                },
            )
            prepared = self._prepare(event, signers)

            def register(c: Connection, size: int) -> None:
                c.execute(
                    insert(TlogKey).values(
                        vkey=signer.vkey,
                        name=signer.name,
                        key_id=f"{signer.key_id:08x}",
                        status="active",
                        added_at_size=size,
                        retired_at_size=None,
                        added_at=_utcnow(),
                        retired_at=None,
                    )
                )

            return self._append_locked(conn, [prepared], signers=signers, before_head=register)[0]

        result = self._write(session, run)
        self._signers = signers
        return result

    def retire_key(self, key: str, *, session: Session | Connection | None = None) -> AppendResult:
        """End a rotation: log a ``key.rotated`` event (action ``retired``, signed by every
        active key, the retiring one included), then stop signing with ``key`` (a vkey, key
        hint ``name+id`` or hex key id)."""
        target = next(
            (s for s in self._signers if key in (s.vkey, s.key_hint, f"{s.key_id:08x}")), None
        )
        if target is None:
            raise LogStateError(f"key {key!r} is not one of this log's loaded signers")
        if len(self._signers) < 2:
            raise LogStateError(f"key {target.key_hint} is the only active key: add one first")
        remaining = [s for s in self._signers if s is not target]

        def run(conn: Connection) -> AppendResult:
            self._lock_head(conn)
            self._check_signers(conn)
            event = LifecycleEvent(
                EventType.KEY_ROTATED,
                rfc3339(_utcnow()),
                details={
                    "action": "retired",
                    "key": target.vkey,
                    "active": sorted(s.vkey for s in remaining),
                },
            )
            prepared = self._prepare(event, self._signers)

            def retire(c: Connection, size: int) -> None:
                c.execute(
                    update(TlogKey)
                    .where(TlogKey.vkey == target.vkey)
                    .values(status="retired", retired_at_size=size, retired_at=_utcnow())
                )

            return self._append_locked(conn, [prepared], before_head=retire)[0]

        result = self._write(session, run)
        self._signers = remaining
        return result

    # -- reading -----------------------------------------------------------------------------

    def _head(self, conn: Connection) -> _Head:
        row = conn.execute(select(*_HEAD_COLUMNS).where(TlogHead.id == 1)).first()
        if row is None:
            raise LogStateError("the log is not initialised: run `lethe-audit log init`")
        return _Head(*row)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint at ``size`` (default: the latest)."""

        def run(conn: Connection) -> str:
            if size is None:
                return self._head(conn).checkpoint
            note_text = conn.execute(
                select(TlogCheckpoint.note).where(TlogCheckpoint.size == size)
            ).scalar()
            if note_text is None:
                raise LogStateError(f"the log signed no checkpoint at size {size}")
            return note_text

        return self._read(run)

    def head(self) -> Checkpoint:
        """The latest checkpoint, parsed."""
        from lethe_audit import note

        return Checkpoint.parse(note.parse(self.checkpoint()).text)

    def origin(self) -> str:
        """The log origin (its checkpoints' first line)."""
        return self._read(lambda conn: self._head(conn).origin)

    def size(self) -> int:
        """The number of entries."""
        return self._read(lambda conn: self._head(conn).size)

    def entry(self, index: int) -> bytes:
        """The stored envelope bytes (the Merkle leaf) of entry ``index``."""

        def run(conn: Connection) -> bytes:
            data = conn.execute(select(TlogEntry.envelope).where(TlogEntry.idx == index)).scalar()
            if data is None:
                raise LogStateError(f"no entry {index} (the log has {self._head(conn).size})")
            return bytes(data)

        return self._read(run)

    def find(self, item: bytes | Appendable) -> int | None:
        """The index of an envelope (bytes, or what :meth:`append` would log), if logged."""
        if isinstance(item, bytes):
            h = leaf_hash(item) if len(item) != 32 else item
        else:
            h = self._prepare(item, self._signers).leaf
        return self._read(
            lambda conn: conn.execute(
                select(TlogEntry.idx).where(TlogEntry.leaf_hash == h)
            ).scalar()
        )

    def iter_entries(
        self, start: int = 0, stop: int | None = None, *, batch: int = 5000
    ) -> Iterator[tuple[int, bytes]]:
        """``(index, envelope bytes)`` in index order, read in batches."""
        pos = start
        while stop is None or pos < stop:
            hi = pos + batch if stop is None else min(pos + batch, stop)

            def run(conn: Connection, lo: int = pos, up: int = hi) -> list[tuple[int, bytes]]:
                q = (
                    select(TlogEntry.idx, TlogEntry.envelope)
                    .where(TlogEntry.idx >= lo, TlogEntry.idx < up)
                    .order_by(TlogEntry.idx)
                )
                return [(i, bytes(e)) for i, e in conn.execute(q)]

            rows = self._read(run)
            if not rows:
                return
            yield from rows
            pos = rows[-1][0] + 1

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of entry ``index`` in the tree of ``size`` entries (default: current)."""

        def run(conn: Connection) -> list[bytes]:
            n = self._head(conn).size if size is None else size
            self._check_size(conn, n)
            if not 0 <= index < n:
                raise LogStateError(f"entry {index} is not in a tree of size {n}")
            return inclusion_proof(index, n, DatabaseHashSource(conn))

        return self._read(run)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Proof that the tree at ``size1`` is a prefix of the tree at ``size2`` (default:
        current)."""

        def run(conn: Connection) -> list[bytes]:
            n = self._head(conn).size if size2 is None else size2
            self._check_size(conn, n)
            if not 0 <= size1 <= n:
                raise LogStateError(f"need 0 <= size1 <= size2, got {size1}, {n}")
            return consistency_proof(size1, n, DatabaseHashSource(conn))

        return self._read(run)

    def _check_size(self, conn: Connection, size: int) -> None:
        current = self._head(conn).size
        if not 0 <= size <= current:
            raise LogStateError(f"tree size {size} is beyond the log's size {current}")

    def receipt(self, index: int, *, size: int | None = None) -> str:
        """A deletion receipt for entry ``index``: a C2SP tlog-proof whose ``extra`` is the
        logged envelope, against the signed checkpoint at ``size`` (default: latest).

        The receipt is checked against its checkpoint's root before it is returned.
        """
        from lethe_audit import note

        def run(conn: Connection) -> str:
            head = self._head(conn)
            n = head.size if size is None else size
            note_text: str | None
            if size is None:
                note_text = head.checkpoint
            else:
                self._check_size(conn, n)
                note_text = conn.execute(
                    select(TlogCheckpoint.note).where(TlogCheckpoint.size == n)
                ).scalar()
                if note_text is None:
                    raise LogStateError(f"the log signed no checkpoint at size {n}")
            if not 0 <= index < n:
                raise LogStateError(f"entry {index} is not covered by the checkpoint at size {n}")
            envelope = conn.execute(
                select(TlogEntry.envelope).where(TlogEntry.idx == index)
            ).scalar()
            if envelope is None:
                raise StoreError(f"entry {index} is missing from the database")
            proof = inclusion_proof(index, n, DatabaseHashSource(conn))
            cp = Checkpoint.parse(note.parse(note_text).text)
            verify_inclusion(leaf_hash(bytes(envelope)), index, n, proof, cp.root)
            return TlogProof.create(index, proof, note_text, extra=bytes(envelope)).to_text()

        return self._read(run)

    def export_bundle(
        self,
        path: str | Path,
        *,
        attachments: Sequence[str | Path] = (),
        progress: bool = False,
    ) -> Path:
        """Write an auditor bundle (directory, or a ``.zip`` when ``path`` ends in ``.zip``)
        holding every entry, the checkpoint history and the log's public keys, as of one
        consistent snapshot. ``attachments`` are copied under ``attachments/``."""
        from lethe_audit.log._export import export_bundle

        return self._read(
            lambda conn: export_bundle(
                conn, Path(path), attachments=attachments, progress=progress
            ),
            snapshot=True,
        )
