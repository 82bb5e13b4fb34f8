"""Real parts that the tests and the benches both set up, on loopback.

Neither a test nor a bench is product code, and a bench must not import the
test suite: what both need lives here.

- `testkit.platform`: free loopback ports, and the ``default`` block documents
  of a platform on a Prefect server;
- `testkit.delivery`: a registry, a service rendered from its template and
  catalogued, and the clean-up of its containers and images;
- `testkit.monitoring`: Prometheus, Alertmanager, the blackbox exporter and
  the monitor on loopback, and the people's end (a webhook, an SMTP inbox).
"""
