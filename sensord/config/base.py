"""What every section of the configuration is: a pydantic model whose unknown keys are
errors and whose defaults are validated like given values (sections.py, cluster.py and
detection.py build on it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A section: unknown keys are errors, and defaults are validated like given values."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
