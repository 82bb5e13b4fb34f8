"""Security scanners behind one interface, each in its own module.

`base` holds the interface and the values; `bandit` and `dependencies` are the
adapters. Import the adapters from their modules, so a flow that only needs
the values does not pay for the rest.
"""

from __future__ import annotations

from tasks.scanners.base import Finding, Scanner, ScanResult, ScanStatus, Severity

__all__ = ["Finding", "ScanResult", "ScanStatus", "Scanner", "Severity"]
