"""Run reports: an HTML page with PNG curves built from a run's metrics.jsonl (`build_report`)."""
