"""What every params.yaml section is: a frozen dataclass named after its section, validated on build."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class Section:
    SECTION: ClassVar[str]

    def key(self, name: str) -> str:
        return f"{self.SECTION}.{name}"

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen dataclass: normalise once, here

    def as_dict(self) -> dict[str, Any]:
        """The section as params.yaml holds it (fields that are not params keys left out)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
            if f.metadata.get("param", True)
        }  # type: ignore[arg-type]
