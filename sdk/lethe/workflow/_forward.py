"""How the :class:`~lethe.workflow.Lethe` facade forwards a method to a service, typed.

``file = Forward("_requests", RequestService.file)`` in the class body makes ``lt.file(...)``
the service's bound method: the same signature and types for mypy and IDEs (a ``ParamSpec``
carries them), nothing copied that could drift, and ``"See :meth:`RequestService.file`."`` as
the facade's docstring (the service method's docstring is the documentation). On the class,
``Lethe.file`` is the service function itself, so ``help(Lethe.file)`` shows that
documentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

__all__ = ["Forward"]

P = ParamSpec("P")
R = TypeVar("R")


class Forward(Generic[P, R]):
    """A facade attribute that is ``<facade>.<service>.<method>``; ``service`` may be a dotted
    path of attributes (``"_applies.versions"``)."""

    def __init__(self, service: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self._path = tuple(service.split("."))
        self._method = method
        self._name = method.__name__
        self.__doc__ = f"See :meth:`{method.__qualname__}`."

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Callable[Concatenate[Any, P], R]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self._method
        target = obj
        for attr in self._path:
            target = getattr(target, attr)
        return getattr(target, self._name)
