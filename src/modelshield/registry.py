"""The registration point: every format and container handler, in detection order.

Adding a format means writing one module with a `Handler` subclass and adding one line here.
"""

from __future__ import annotations

from modelshield.core.handler import Handler
from modelshield.core.rules import CATALOGUE
from modelshield.core.scan_rules import ENGINE_RULES

HANDLERS: tuple[Handler, ...] = (
)

CATALOGUE.register(ENGINE_RULES)
for _handler in HANDLERS:
    CATALOGUE.register(_handler.rules)

#: Allowlist keys the policy accepts under `[allow]`, declared by the handlers that read them.
ALLOWLISTS: frozenset[str] = frozenset(key for handler in HANDLERS for key in handler.allowlists)
