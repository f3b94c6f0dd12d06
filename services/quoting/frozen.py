"""Building frozen dataclasses fast: `frozen_new` fills an instance without its __init__, and
`computed_once` keeps a derived value beside the fields (outside equality, `fields`, `asdict`
and `replace`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

_Owner = TypeVar("_Owner")
_Value = TypeVar("_Value")


def frozen_new(cls: type[_Owner], **values: Any) -> _Owner:
    """`cls(**values)` for a frozen dataclass given every field, in field order, and without
    __post_init__: the instance's __dict__ filled at once, where the generated __init__ calls
    object.__setattr__ field by field (a sixth of a quote went there). The instance is the
    same: equal to the constructor's, as frozen, with the same fields."""
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


class computed_once(Generic[_Owner, _Value]):
    """`functools.cached_property` without its lock (Python 3.11's takes an RLock on every
    first read, which costs more than most values it keeps). For frozen dataclasses without
    slots: the value is kept in the instance's __dict__, outside the dataclass fields
    (equality, `fields`, `asdict` and `replace` do not see it). Two threads may both compute
    it: the function must be pure."""

    def __init__(self, func: Callable[[_Owner], _Value]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> computed_once[_Owner, _Value]:
        ...

    @overload
    def __get__(self, instance: _Owner, owner: type | None = None) -> _Value: ...

    def __get__(self, instance: _Owner | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value
