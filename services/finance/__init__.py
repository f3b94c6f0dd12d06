"""The scheduled, finance side: reconciliation, its statistics, anomalies and range reports."""
