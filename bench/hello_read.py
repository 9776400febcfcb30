"""The least a read that asks PostgreSQL can cost in Flask: the bound of the read target.

The entitlement read's route and query (the gateway's own statement), answered by bare
Flask over one psycopg connection per thread: no API key, no pool, no access line, no
metrics, no cache. ``bench/run.sh`` serves it under the same gunicorn settings as the
gateway and the hello; its ratio to the hello is what any Flask read that asks
PostgreSQL on every request could reach on the machine at hand.
"""
import os
import threading

import psycopg
from flask import Flask, jsonify

from gateway.store.statements import for_postgres

app = Flask(__name__)
_local = threading.local()
_SQL = for_postgres().select_entitlements


@app.get("/v1/users/<user_sub>/entitlements")
def read(user_sub: str):
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    rows = connection.execute(_SQL, {"user_sub": user_sub}).fetchall()
    return jsonify({"user_id": user_sub, "entitlements": {
        name: {"status": status, "expires_at": expires_at.isoformat() if expires_at else None,
               "will_renew": will_renew, "source": source, "product_id": product_id}
        for name, status, expires_at, will_renew, source, product_id, _ in rows}})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})
