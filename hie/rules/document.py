"""Rules and transforms as data: a mapping validated into its model, errors naming the file.

Both are written out with a ``kind`` key (``rules`` / ``transform``) that says what the file
holds; it is not a field of either model, so it is dropped before validation.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from hie.errors import ConfigError

__all__ = ["validate_document"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_document(
    model: type[ModelT], data: Any, *, source: str, not_mapping: str, invalid: str
) -> ModelT:
    """``data`` (without its ``kind``) validated as ``model``.

    Raises:
        ConfigError: ``source``, then ``not_mapping`` when ``data`` is not a mapping, or
            ``invalid`` and pydantic's account when it does not validate.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {not_mapping}")
    data = {k: v for k, v in data.items() if k != "kind"}
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"{source}: {invalid}: {exc}") from exc
