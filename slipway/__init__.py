"""Slipway's kernel: what every layer shares.

`flows/`, `tasks/`, `blocks/` and `deployments/` all import from here, and this
package imports none of them, so it can never take part in an import cycle.
"""

from __future__ import annotations

__all__: list[str] = []
