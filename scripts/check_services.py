"""Fail fast, with a clear line, when the services the suite needs are unreachable."""

import os
import sys

import psycopg
import redis

PG = os.environ.get("DISPATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("DISPATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

problems = []
try:
    psycopg.connect(PG, connect_timeout=5).close()
except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
    problems.append(f"PostgreSQL unreachable at {PG}: {exc}")
try:
    redis.Redis.from_url(REDIS, socket_timeout=5).ping()
except Exception as exc:  # noqa: BLE001
    problems.append(f"Redis unreachable at {REDIS}: {exc}")
for p in problems:
    print(f"error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
