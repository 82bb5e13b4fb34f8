"""Insights: DORA metrics and scorecards, from what the platform already records.

- `measure`: the steps the ``nightly-insights`` and ``evaluate-service`` flows
  tell (`measure_service`, `measure_team`, `score_service`, ...);
- `dora`: DORA's five metrics from the release history (`DoraReport`);
- `records`: reading delivery's release records and artifacts from Prefect;
- `health_log`: production health failures, kept as long as DORA looks back;
- `scorecards` and `facts`: the checks (``scorecards.yaml``) and the facts
  they judge;
- `docs_freshness`: how far a service's published docs are behind its repository;
- `store`: where reports and scorecards are kept in the artifact store.
"""

__all__: list[str] = []
