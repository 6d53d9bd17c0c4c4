"""Selection keys and the selector's key sets: java.nio's SelectionKey, Selector.keys(),
Selector.selectedKeys().

A :class:`SelectionKey` is one channel's registration with one :class:`~zcio.Selector`:
its interest set (what the caller waits for), its ready set (what ``select()`` found)
and an attachment.  The key sets are live views of the selector's own dictionaries,
read under its lock; see ``zcio._selector`` for how ``select()`` fills them and for
Java's cancellation rules.
"""

from __future__ import annotations

import select as _select
from collections.abc import Iterable, Iterator, MutableSet, Set
from typing import TYPE_CHECKING, Any, NoReturn, Self, TypeVar, overload

from ._errors import CancelledKeyError, UnsupportedOperationError
from ._selectable import OP_ACCEPT, OP_CONNECT, OP_READ, OP_WRITE

if TYPE_CHECKING:
    from ._selectable import SelectableChannel
    from ._selector import Selector

__all__ = ["SelectionKey", "KeySetView", "SelectedKeySet", "events_for", "SET", "OR", "AND",
           "HANG_UP"]

_T = TypeVar("_T")
SET, OR, AND = 0, 1, 2  # how _set_interest combines the new ops with the old
_READ_OPS = OP_READ | OP_ACCEPT
_WRITE_OPS = OP_WRITE | OP_CONNECT
HANG_UP = _select.EPOLLERR | _select.EPOLLHUP


def events_for(ops: int) -> int:
    """The epoll events that watch for ``ops`` (0: not in epoll at all)."""
    events = 0
    if ops & _READ_OPS:
        events |= _select.EPOLLIN
    if ops & _WRITE_OPS:
        events |= _select.EPOLLOUT
    return events


class SelectionKey:
    """The registration of one channel with one selector (Java's SelectionKey).

    Valid from registration until ``cancel()``, the channel's close or the selector's
    close.  ``interest_ops``/``ready_ops`` of an invalid key raise CancelledKeyError.
    """

    __slots__ = (
        "_channel", "_selector", "_fd", "_interest", "_events", "_ready", "_attachment",
        "_valid", "_serial",
    )

    def __init__(
        self, channel: SelectableChannel, selector: Selector, fd: int, serial: int
    ) -> None:
        self._channel = channel
        self._selector = selector
        self._fd = fd  # the descriptor as registered: still known after the channel closes
        self._interest = 0
        self._events = 0  # what epoll watches for this key now (0: not in epoll)
        self._ready = 0
        self._attachment: Any = None
        self._valid = True
        self._serial = serial  # the selector's registration count when this key was made

    def channel(self) -> SelectableChannel:
        """The channel this key registers (returned even after cancel)."""
        return self._channel

    def selector(self) -> Selector:
        """The selector this key belongs to (returned even after cancel)."""
        return self._selector

    def is_valid(self) -> bool:
        """Whether the key has been neither cancelled nor closed with its channel/selector."""
        return self._valid

    def cancel(self) -> None:
        """Cancel the registration (idempotent).

        The key becomes invalid at once, and its descriptor leaves epoll at once
        (``epoll_ctl(EPOLL_CTL_DEL)``).  It leaves ``keys()``, the selected-key set and
        the channel's registrations at the next ``select()``.
        """
        if self._valid:
            self._selector._cancel(self)

    def _check_valid(self) -> None:
        if not self._valid:
            raise CancelledKeyError("selection key is cancelled")

    @overload
    def interest_ops(self) -> int: ...
    @overload
    def interest_ops(self, ops: int) -> Self: ...
    def interest_ops(self, ops: int | None = None) -> int | Self:
        """The interest set, or set it to ``ops`` (returns the key).

        Takes effect for the next ``select()``, and for one in progress.
        CancelledKeyError if the key is invalid, then IllegalArgumentError for ops
        outside the channel's ``valid_ops()`` (Java's order).
        Syscalls: ``epoll_ctl`` (MOD, or ADD/DEL when the set becomes non-empty/empty).
        """
        self._check_valid()
        if ops is None:
            return self._interest
        self._channel._check_ops(ops)
        self._selector._set_interest(self, ops, SET)
        return self

    def interest_ops_or(self, ops: int) -> int:
        """Add ``ops`` to the interest set, atomically; returns the previous set.

        CancelledKeyError, then IllegalArgumentError for ops outside ``valid_ops()``.
        Syscalls: as :meth:`interest_ops`.
        """
        self._check_valid()
        self._channel._check_ops(ops)
        return self._selector._set_interest(self, ops, OR)

    def interest_ops_and(self, ops: int) -> int:
        """Keep only ``ops`` of the interest set, atomically; returns the previous set.

        CancelledKeyError if invalid (any ``ops`` is accepted: it can only remove).
        Syscalls: as :meth:`interest_ops`.
        """
        self._check_valid()
        return self._selector._set_interest(self, ops, AND)

    def ready_ops(self) -> int:
        """The ready set the last ``select()`` that updated this key left."""
        self._check_valid()
        return self._ready

    def is_readable(self) -> bool:
        """Whether OP_READ is in the ready set."""
        return bool(self.ready_ops() & OP_READ)

    def is_writable(self) -> bool:
        """Whether OP_WRITE is in the ready set."""
        return bool(self.ready_ops() & OP_WRITE)

    def is_connectable(self) -> bool:
        """Whether OP_CONNECT is in the ready set."""
        return bool(self.ready_ops() & OP_CONNECT)

    def is_acceptable(self) -> bool:
        """Whether OP_ACCEPT is in the ready set."""
        return bool(self.ready_ops() & OP_ACCEPT)

    def attach(self, obj: Any) -> Any:
        """Attach ``obj`` (None detaches); returns the previous attachment."""
        old, self._attachment = self._attachment, obj
        return old

    def attachment(self) -> Any:
        """The attached object, or None."""
        return self._attachment

    def _translate(self, events: int) -> int:
        """The ready ops for epoll ``events``: the whole interest set on an error or a
        hang-up (Java's rule for every channel), else what the channel says is ready."""
        if events & HANG_UP:
            return self._interest
        return self._channel._translate_ready_ops(
            bool(events & _select.EPOLLIN), bool(events & _select.EPOLLOUT), self._interest
        )

    def __repr__(self) -> str:
        state = (
            f"interest={self._interest:#x} ready={self._ready:#x}" if self._valid else "cancelled"
        )
        return f"zcio.SelectionKey[{self._channel!r} {state}]"


class _LiveKeys(Set[SelectionKey]):
    """A live view of one of a selector's key sets; iteration runs over a snapshot, so
    the selector (or the caller, removing the keys it handled) may change it meanwhile."""

    __slots__ = ("_selector",)

    def __init__(self, selector: Selector) -> None:
        self._selector = selector

    def _items(self) -> dict[SelectionKey, None]:
        raise NotImplementedError

    def __contains__(self, key: object) -> bool:
        return key in self._items()

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[SelectionKey]:
        with self._selector._lock:
            return iter(list(self._items()))

    @classmethod
    def _from_iterable(cls, it: Iterable[_T]) -> set[_T]:
        return set(it)  # what ``view & other``, ``view | other``... return

    def __repr__(self) -> str:
        return f"{{{', '.join(map(repr, self))}}}"


class KeySetView(_LiveKeys):
    """``Selector.keys()``: read-only, as Java's; every mutator raises
    UnsupportedOperationError (keys come with ``register``, go with ``cancel``)."""

    __slots__ = ()

    def _items(self) -> dict[SelectionKey, None]:
        return self._selector._keys

    def _read_only(self, *args: object) -> NoReturn:
        raise UnsupportedOperationError(
            "a selector's key set is read-only: register a channel or cancel its key"
        )

    add = discard = remove = pop = clear = update = _read_only
    difference_update = intersection_update = symmetric_difference_update = _read_only
    __ior__ = __iand__ = __isub__ = __ixor__ = _read_only


class SelectedKeySet(_LiveKeys, MutableSet[SelectionKey]):
    """``Selector.selected_keys()``: the selected-key set itself, ungrowable as Java's.

    Keys may be removed (``discard``, ``remove``, ``clear``, ``pop``, ``-=``...); a
    removed key keeps its ready set.  Adding (``add``, ``update``, ``|=``) raises
    UnsupportedOperationError: only ``select()`` adds keys.
    """

    __slots__ = ()

    def _items(self) -> dict[SelectionKey, None]:
        return self._selector._selected

    def discard(self, key: SelectionKey) -> None:
        """Remove ``key`` if present."""
        with self._selector._lock:
            self._selector._selected.pop(key, None)

    def remove(self, key: SelectionKey) -> None:
        """Remove ``key``; KeyError if absent."""
        with self._selector._lock:
            del self._selector._selected[key]

    def difference_update(self, *others: Iterable[SelectionKey]) -> None:
        """Remove every key of ``others``."""
        for other in others:
            for key in list(other):
                self.discard(key)

    def clear(self) -> None:
        """Remove every key."""
        with self._selector._lock:
            self._selector._selected.clear()

    def pop(self) -> SelectionKey:
        """Remove and return some key; KeyError if empty."""
        with self._selector._lock:
            if not self._selector._selected:
                raise KeyError("pop from an empty selected-key set")
            return self._selector._selected.popitem()[0]

    def add(self, key: SelectionKey) -> NoReturn:
        """Unsupported (UnsupportedOperationError): only ``select()`` adds keys."""
        raise UnsupportedOperationError("only select() adds to the selected-key set")

    def update(self, *others: Iterable[SelectionKey]) -> NoReturn:
        """Unsupported (UnsupportedOperationError): only ``select()`` adds keys."""
        raise UnsupportedOperationError("only select() adds to the selected-key set")
