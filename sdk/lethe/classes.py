"""Class selection: the one rule set that turns class names or ids into class ids.

Requests (:meth:`Lethe.file`), depth references (:meth:`Lethe.train_reference`'s
``held_out_class``), model versions and filter banks (:meth:`FilterBank.class_ids`, ``lethe
filters explain --classes``) all resolve their classes here, so a class means the same
everywhere. Torch-free: importing it loads only :mod:`lethe.errors`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

from lethe.errors import UnknownClassError

__all__ = ["resolve_class_ids"]


def resolve_class_ids(
    classes: Iterable[int | str] | int | str,
    names: Sequence[str],
    *,
    owner: str = "the model",
    hint: str = "",
) -> tuple[int, ...]:
    """Class names or ids of a model with classes ``names`` as sorted, de-duplicated ids.

    Each item is a class name (matched exactly; a name wins over an id it spells), a string of
    ASCII digits (an id: ``"3"``), or an integer (``int``, a numpy integer, anything with
    ``__index__``; not ``bool``). An id outside ``0..len(names)-1``, an unknown name or any
    other value raises :class:`~lethe.errors.UnknownClassError`, whose message names
    ``owner`` (``"model 'digits'"``) and ends with ``hint``, where the caller says in its own
    language where the classes are listed (a CLI command, a Python attribute). An empty
    selection gives ``()``: whether that is allowed is the caller's rule.
    """
    items: Iterable[int | str] = [classes] if isinstance(classes, (str, int)) else classes
    return tuple(sorted({_one(c, names, owner, hint) for c in items}))


def _one(c: object, names: Sequence[str], owner: str, hint: str) -> int:
    """One class name or id as an id."""
    n = len(names)
    if isinstance(c, str):
        if c in names:
            return list(names).index(c)
        if not (c.isascii() and c.isdigit()):
            tail = f"; {hint}" if hint else ""
            raise UnknownClassError(f"{owner} has no class {c!r}{tail}")
        value = int(c)
    elif isinstance(c, bool):
        raise UnknownClassError(f"{c!r} is not a class: give a class name or id")
    else:
        try:
            value = operator.index(c)  # type: ignore[arg-type]  # checked: TypeError below
        except TypeError:
            raise UnknownClassError(f"classes must be names or ids, got {c!r}") from None
    if not 0 <= value < n:
        raise UnknownClassError(f"{owner} has classes 0..{n - 1}, not {value}")
    return value
