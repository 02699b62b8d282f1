"""Header values that readers meet: how a file writes a value it does not have."""

from __future__ import annotations

import re

#: a retention time written as missing (``NA``, ``n/a``, ``-``, empty, with or without a unit):
#: no value to tell of, unlike one that is there and cannot be read (``5:30``, ``abc``)
RT_MISSING = re.compile(r"^\s*(n/?a|nan|none|null|unknown|-)?\s*(min|s|sec)?\s*$", re.IGNORECASE)
