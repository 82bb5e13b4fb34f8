"""The service's code; `python3 -m app.server` starts it."""
