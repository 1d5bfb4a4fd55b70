"""``aws.role_arn``: the role is assumed through STS (moto's) and refreshed while the bridge
runs, with no failed request and no error in the log.

The Streams double records the access key that signed each request, so a refresh shows as
the key changing mid-run (moto's STS gives new keys per AssumeRole). Sessions last 900 s
(STS's minimum) and are refreshed 894 s before they expire: every ~6 s, several times in a
short run.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.support import ChangeLog, assert_exact, double_config, topic_of, wait_until

pytestmark = pytest.mark.slow

ROLE = "arn:aws:iam::123456789012:role/bridge-reader"


def test_assumed_role_is_refreshed_mid_run_without_a_failed_request(stack, make_double, bridges, make_reader,
                                                                   measured) -> None:
    d = make_double(shards=1)
    log = ChangeLog(d)
    cfg = double_config(stack, d, metrics=False)
    cfg["aws"] |= {"role_arn": ROLE, "external_id": "ext-77", "session_name": "bridge-test", "duration_s": 900,
                   "refresh_before_expiry_s": 894}
    bridge = bridges.start(cfg, env={"AWS_ENDPOINT_URL_STS": stack.dynamodb_endpoint})
    reader = make_reader(stack.kafka_bootstrap, stack.registry_url, topic_of(cfg))
    started = time.monotonic()
    keys_seen: list[str] = []

    def keys() -> list[str]:
        out: list[str] = []
        for _, op, _, who in list(d.request_log):
            if op == "GetRecords" and (not out or out[-1] != who):
                out.append(who)
        return out

    while time.monotonic() - started < 40 and len(keys_seen) < 4:
        log.write_many(20, keys=10)
        reader.wait_for_log(log, 30)
        keys_seen = keys()
        time.sleep(0.5)  # a steady trickle of changes while the session ages
    wait_until(lambda: len(keys()) >= 4, 30, "a fourth set of assumed-role keys signing GetRecords")
    log.write_many(20, keys=10)
    reader.wait_for_log(log, 30)
    reader.drain(1.0)
    assert bridge.stop() == 0, bridge.log()[-3000:]
    keys_seen = keys()
    assert "test" not in keys_seen, "a request was signed with the source keys, not the role's"
    assert len(set(keys_seen)) == len(keys_seen), f"an old key came back after a refresh: {keys_seen}"
    text = bridge.log()
    assumed = text.count(f"assumed role {ROLE}")
    assert assumed >= 4, text[-3000:]
    bad = [ln for ln in text.splitlines() if " ERROR " in ln or " WARNING " in ln]
    assert not bad, bad[:5]
    assert_exact(reader.events, log)
    measured(f"assumed role, refreshed every ~6 s: {assumed} assumes, {len(keys_seen)} keys signed GetRecords in turn, "
             f"{log.count} records, 0 failed requests")
