"""The scheduled, finance side: the daily reconciliation, the digest's figures, anomalies and
range reports.

- `days`: the UTC window of a business day.
- `reconcile`: the engine, one day's three-way match; it reads our ledger through
  `services.refunds.ledger` and Checkfront through `booking_check`, and stores its result
  through `runs`.
- `runs`: reconciliation runs and discrepancies as records, and all their SQL.
- `stats`: the digest's figures (refunds of a day, decisions, waiting cases, refunds per day).
- `anomaly`: the detector's rules; `anomaly_log`: what it saw, by episode; `breaker`: the
  circuit breaker a blocking anomaly trips.
- `report`: refund reports over a date range, with CSV.

Every query of the `executions` table, these modules' included, is in
`services.refunds.ledger`.
"""
