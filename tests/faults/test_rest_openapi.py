"""The REST API against its own OpenAPI document (schemathesis, property-based): every
operation, with generated parameters and the connector's real name, answers with a
status code, content type and body the document declares, and never a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.doubles.streams_double import StreamsDouble
from tests.faults.support import ChangeLog, double_config, free_port, get_status, wait_until
from tests.faults.test_operations import call
from tests.helpers import InProcessBridge

pytestmark = pytest.mark.slow

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)


def test_rest_api_conforms_to_its_openapi_document(stack: Any, make_double: Callable[..., StreamsDouble]) -> None:
    double = make_double(shards=2)
    ChangeLog(double).write_many(10, keys=4)
    port, token = free_port(), "schema-token"
    cfg = double_config(stack, double, rest={"port": port, "bearer_token": token})
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    with InProcessBridge(cfg) as bridge:
        wait_until(lambda: (bridge.check(), get_status(f"{base}/health")[0] == 200)[1], 60, "the REST API to answer")
        status, document = call(base, "GET", "/openapi.json", token)
        assert status == 200
        schema = schemathesis.openapi.from_dict(document)
        operations = [op.ok() for op in schema.get_all_operations()]
        assert len(operations) >= 14
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=6, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def conforms(case: Any) -> None:
                if "name" in (case.path_parameters or {}):
                    case.path_parameters["name"] = cfg["name"]
                response = case.call(base_url=base, headers=auth, timeout=130)
                case.validate_response(response, checks=list(CHECKS))

            conforms()
        bridge.check()
