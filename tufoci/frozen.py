"""Small immutable value classes without ``dataclasses`` (standard library only, nothing imported).

Why: the warm ``tufoci verify`` (client/fast_verify.py) must start in a few milliseconds, and a
frozen ``@dataclass`` costs ~1 ms to build on this machine (it compiles its generated methods),
besides ``dataclasses``' own import of ``inspect``/``ast``/``dis`` (~3.5 ms). The value classes on
that path (references, trust pins, the registry configuration, verify results, the bare transport's
endpoint and answers) derive from ``Frozen`` instead: fields in ``__slots__``,
set once by ``__init__`` through ``_init``, compared, hashed and shown by their fields in order —
what ``@dataclass(frozen=True)`` gave them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, which mypy reads, without importing typing
if TYPE_CHECKING:
    from typing import Self


class Frozen:
    """Subclasses list their fields in ``__slots__`` and call ``self._init(a, b, …)`` in that order."""

    __slots__: tuple[str, ...] = ()

    def _init(self, *values: object) -> None:
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def as_dict(self) -> dict[str, object]:
        """The fields by name, in order (a dataclass's ``__dict__``)."""
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: object) -> Self:
        """A copy with ``changes`` (field → value), as ``dataclasses.replace``.

        Raises:
            TypeError: a name that is not a field.
        """
        unknown = set(changes) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(sorted(unknown))}")
        return self.__class__(*(changes.get(name, getattr(self, name)) for name in self.__slots__))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def _compared(self) -> tuple:
        """What equality and the hash are made of: every field (a subclass may leave one out)."""
        return self._values()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, *self._compared()))

    def __reduce__(self) -> tuple:  # copy and pickle rebuild through __init__ (the slots cannot be set)
        return (self.__class__, self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__name__}({fields})"
