import io
import json
import logging

from dispatch.log import configure_logging, get_logger


def test_one_json_event_per_line_without_secrets():
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        log = get_logger("dispatch.test")
        log.info(
            "delivery.sent",
            campaign_id=3,
            delivery_id=9,
            smtp_password="hunter2",
            url="smtp://bob:hunter2@relay:587",
        )
        log.debug("hidden", delivery_id=1)
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert (
        event["event"] == "delivery.sent"
        and event["campaign_id"] == 3
        and event["delivery_id"] == 9
    )
    assert "hunter2" not in lines[0]
