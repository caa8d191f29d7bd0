"""Fail fast, with a clear line, when the services the suite needs are unreachable."""

import os
import sys

import amqp
import psycopg
import redis

PG = os.environ.get("DISPATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("DISPATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBIT = os.environ.get("DISPATCH_TEST_RABBITMQ_HOST", "127.0.0.1:5672")

problems = []
try:
    psycopg.connect(PG, connect_timeout=5).close()
except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
    problems.append(f"PostgreSQL unreachable at {PG}: {exc}")
try:
    redis.Redis.from_url(REDIS, socket_timeout=5).ping()
except Exception as exc:  # noqa: BLE001
    problems.append(f"Redis unreachable at {REDIS}: {exc}")
try:  # the broker fault tests run on RabbitMQ too (tests/test_delivery_workers.py)
    connection = amqp.Connection(
        RABBIT,
        userid=os.environ.get("DISPATCH_TEST_RABBITMQ_USER", "guest"),
        password=os.environ.get("DISPATCH_TEST_RABBITMQ_PASSWORD", "guest"),
        connect_timeout=5,
    )
    connection.connect()
    connection.close()
except Exception as exc:  # noqa: BLE001
    problems.append(f"RabbitMQ unreachable at {RABBIT}: {exc}")
for p in problems:
    print(f"error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
