"""Security scanners behind one interface, each in its own module, and what a scan makes of them.

- `base`: the interface and the values (`Finding`, `ScanResult`, `Scanner`);
- adapters: `bandit` (SAST), `dependencies` (pip-audit), `secrets`
  (detect-secrets), `iac` (checkov), and `sbom` (cyclonedx-py);
- `runner` runs them over one checkout; `compare`, `accepted` and `report` turn
  the results into a `ScanSummary`; `sarif` and `history` write it out;
- `gate` decides whether a scanned commit may go to prod;
- `vulnerability_data` and `exploited` hold the OSV mirror's and the
  known-exploited catalog's local copies.

Import the adapters from their modules, so a flow that only needs the values
does not pay for the rest.
"""

from __future__ import annotations

from tasks.scanners.base import (
    Finding,
    Scanner,
    ScanResult,
    ScanStatus,
    Severity,
    UnavailableScanner,
)

__all__ = ["Finding", "ScanResult", "ScanStatus", "Scanner", "Severity", "UnavailableScanner"]
