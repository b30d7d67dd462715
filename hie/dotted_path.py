"""Import the class or callable a production names by path (hosts, hooks, message body classes).

Both spellings work: ``package.module:Name`` (a nested ``Name.Inner`` too) and
``package.module.Name``.
"""

from __future__ import annotations

import importlib


def import_object(path: str) -> object:
    """The object at ``path``.

    Raises:
        ImportError: its module cannot be imported, or ``path`` names no module and attribute.
        AttributeError: the module has no such attribute.
    """
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{path!r} is not a dotted path")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
