"""Fuzz the admin API from its own OpenAPI document (schemathesis): no request, however odd,
gets a 500. Examples per operation are bounded so the whole run stays well under a minute."""

from __future__ import annotations

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, given

from test_web_support import bearer, seed

pytest_plugins = ["test_web_support"]

EXAMPLES_PER_OPERATION = 10


def test_no_generated_request_gets_a_server_error(web_app, engine, settings, tokens):
    seed(engine, settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", web_app)
    headers = bearer(tokens["admin"])
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    for operation in operations:

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:
            response = case.call(headers=headers)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:200]} "
                    f"-> {response.status_code} {response.text[:300]}"
                )

        run()
    assert not failures, "\n".join(failures[:10])
    assert len(statuses) >= 3 * len(operations)  # the fuzzer really called every operation
    assert any(code < 300 for code in statuses) and any(400 <= code < 500 for code in statuses)
