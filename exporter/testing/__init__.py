"""Test doubles shipped with the exporter: a fake Kizeo Forms REST v3 service that serves an account
archive over real HTTP (``exporter serve``), for tests, demonstrations and benchmarks.

    fake_server   FakeKizeoServer: start/stop, the archive as a store, tokens, fault schedule
    fake_routes   the request handler: faults applied, token checked, each REST v3 route answered
    fake_data     the nested and flat shapes of a submission, ``data/advanced`` filters and order
    fake_faults   Faults: scheduled misbehaviour (429, 503, dropped connections, latency, ...)

Nothing outside this package imports it except ``exporter serve`` (on demand) and the tests.
"""
