"""Names of a package loaded on first use (PEP 562), so that importing a light part of it (the
audit log, a CLI parser) does not load its heavy parts. A leaf: it imports nothing of InvGuard."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each name to the submodule
    (relative to ``package``) that defines it; a loaded name is kept in ``namespace``."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's name
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module hook's name
        return sorted({*namespace.get("__all__", ()), *exports})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
