"""What an operator sees of the running service: metrics (`metrics.py`, Prometheus), traces
(`tracing.py`, OpenTelemetry), log lines (`logs.py`, text or JSON) and the followers' progress that
health, metrics and `claimsctl status` share (`progress.py`). docs/OPERATIONS.md describes them.

Below the application in the import layers (it knows the domain's events, to count decisions and
money, and nothing above them): the group committer, the adjudicator, the projections, the API and
the processes record into it."""
