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


def test_migrating_logs_one_line_not_alembics_plugin_setup(tmp_path):
    """A worker start used to print 18 lines of Alembic set-up (issue 9): now one line when a
    revision is applied, none when the schema is current."""
    import subprocess
    import sys

    script = (
        "from dispatch.log import configure_logging\n"
        "configure_logging('INFO')\n"
        "from dispatch.db import make_engine, upgrade\n"
        f"engine = make_engine('sqlite:///{tmp_path / 'db.sqlite'}')\n"
        "upgrade(engine)\n"
        "print('--', flush=True)\n"
        "import sys; sys.stderr.write('--\\n'); sys.stderr.flush()\n"
        "upgrade(engine)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stderr.split("--\n")
    lines = first.strip().splitlines()
    assert len(lines) == 1, first
    assert json.loads(lines[0])["event"] == "db.migrated"
    assert second.strip() == ""
