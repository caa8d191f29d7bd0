"""Real Postfix and Dovecot instances for the bounce tests, each with its own config directory.

Both are the Debian packages (scripts/test installs them), started as the test's own instance
(`postfix -c DIR`, `dovecot -c FILE`) on free loopback ports with their queue, state and logs
under a fresh /tmp folder of their own, so they never touch (or clash with) a system instance, and
are
stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from dispatch.outbox import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def have_postfix() -> bool:
    return Path(POSTFIX).exists() and os.geteuid() == 0


def have_dovecot() -> bool:
    return Path(DOVECOT).exists() and os.geteuid() == 0


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def daemon_root(prefix: str) -> Path:
    """A fresh folder the daemons' unprivileged users (postfix, dovecot, nobody) can reach.

    Not under pytest's tmp_path: pytest keeps /tmp/pytest-of-<user> at 0700 (and resets it
    whenever another session starts), which the daemons' users cannot traverse.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o711)
    return root


MASTER_CF = """\
{port}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixRelay:
    """Postfix as a relay: accepts mail from loopback on `port`, relays everything to
    `relay_to` (host, port), and hands the bounce domain to `bounce_to` over SMTP or LMTP."""

    def __init__(
        self,
        *,
        relay_to: tuple[str, int],
        bounce_domain: str,
        bounce_to: tuple[str, int],
        bounce_transport: str = "smtp",
    ):
        self.root = daemon_root("dispatch-postfix-")
        self.etc = self.root / "etc"
        self.port = free_port("127.0.0.1")
        self.relay_to = relay_to
        self.bounce_domain = bounce_domain
        self.bounce_to = bounce_to
        self.bounce_transport = bounce_transport
        self.keep_log = ""  # the log, kept when the folder is removed at stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def maillog(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else self.keep_log

    def write_config(self) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.root / "spool").mkdir(exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        shutil.chown(self.root / "data", "postfix", "postfix")
        host, port = self.bounce_to
        (self.etc / "transport").write_text(
            f"{self.bounce_domain}  {self.bounce_transport}:[{host}]:{port}\n"
        )
        relay_host, relay_port = self.relay_to
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.root / "spool",
            "data_directory": self.root / "data",
            "maillog_file": self.root / "maillog",
            "maillog_file_prefixes": self.root,
            "syslog_name": "postfix-dispatch-test",
            "myhostname": "relay.dispatch-test.example",
            "mydomain": "dispatch-test.example",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[{relay_host}]:{relay_port}",
            "transport_maps": f"texthash:{self.etc / 'transport'}",
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtputf8_enable": "no",
            "biff": "no",
            "notify_classes": "",
            "delay_warning_time": "0",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "shlib_directory": "/usr/lib/postfix",
        }
        (self.etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{self.port}"))

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        output = self.root / "postfix.out"
        with output.open("ab") as out:  # the master keeps inherited pipes open: use a file
            code = subprocess.call(
                [POSTFIX, "-c", str(self.etc), *args], stdout=out, stderr=out, timeout=60
            )
        text = output.read_text(errors="replace")
        if check and code != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed: {text}")
        return subprocess.CompletedProcess(args, code, text, "")

    def start(self) -> PostfixRelay:
        self.write_config()
        self._postfix("start")
        wait_for_port(self.port)
        return self

    def flush(self) -> None:
        self._postfix("flush", check=False)

    def stop(self) -> None:
        self._postfix("stop", check=False)
        # wait for the master to go (its pid file lives in our own queue directory)
        pid_file = self.root / "spool" / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)
        self.keep_log = self.maillog
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 20
}}
"""


class DovecotServer:
    """Dovecot IMAP + POP3 on loopback with one user (`user` / `password`) and maildir storage."""

    def __init__(self, user: str = "bounces", password: str = "s3cret-bounce-box"):
        self.root = daemon_root("dispatch-dovecot-")
        self.user, self.password = user, password
        self.imap_port = free_port("127.0.0.1")
        self.pop3_port = free_port("127.0.0.1")
        self.conf = self.root / "dovecot.conf"

    def start(self) -> DovecotServer:
        for folder in ("run", "state", "mail"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "mail", 0o777)
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        self.conf.write_text(
            DOVECOT_CONF.format(root=self.root, imap_port=self.imap_port, pop3_port=self.pop3_port)
        )
        output = self.root / "start.out"
        with output.open("wb") as out:  # the daemon keeps inherited pipes open: use a file
            code = subprocess.call(
                [DOVECOT, "-c", str(self.conf)], stdout=out, stderr=out, timeout=30
            )
        if code != 0:
            raise RuntimeError(f"dovecot failed to start: {output.read_text(errors='replace')}")
        wait_for_port(self.imap_port)
        wait_for_port(self.pop3_port)
        return self

    def stop(self) -> None:
        subprocess.call(
            [DOVECOT, "-c", str(self.conf), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        pid_file = self.root / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
