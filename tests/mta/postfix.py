"""A private Postfix instance on loopback for end-to-end mail tests.

The instance has its own configuration, queue and data directories under one
temporary directory and never reads or changes /etc/postfix/main.cf. It
listens on 127.0.0.1 only, offers STARTTLS with a certificate from a test CA,
delivers mail for the customer domain into Maildirs (virtual(8)) and hands
mail for the provider's role addresses to an LMTP server on loopback. Every
other destination is routed to the error transport, so no message can leave
the machine.

Starting and stopping a Postfix master needs root; the tests run as root
here and in CI.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import trustme

# The user virtual(8) delivers as: "nobody" on Debian. virtual(8) rejects
# UIDs below virtual_minimum_uid (100), which rules out root.
DELIVERY_UID = 65534
DELIVERY_GID = 65534

# Services of the Debian master.cf that this instance needs, chroot off so
# the daemons see the temporary directories. "smtpd" is added with its port.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """The private Postfix instance failed to start, stop or deliver."""


@dataclass
class PostfixInstance:
    """One running private Postfix and where its mail ends up."""

    root: Path
    port: int
    lmtp_port: int
    mailbox_domain: str
    role_addresses: tuple[str, ...]
    ca: trustme.CA
    ca_file: Path
    hostname: str = "mta.sealmail.test"
    postfix: str = "postfix"
    running: bool = field(default=False, init=False)

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def maildir_base(self) -> Path:
        return self.root / "mail"

    @property
    def log_file(self) -> Path:
        return self.root / "maillog"

    def smtp_url(self, tls: str = "required") -> str:
        """Return a SEALMAIL_SMTP_URL that relays through this instance."""
        return f"smtp://127.0.0.1:{self.port}?tls={tls}&cafile={self.ca_file}"

    @property
    def maildir(self) -> Path:
        """The Maildir that receives mail for every address in the mailbox domain."""
        return self.maildir_base / self.mailbox_domain / "mailbox"

    def delivered(self, address: str) -> list[bytes]:
        """Return the messages delivered to ``address`` so far, oldest first.

        virtual(8) adds a Delivered-To header with the envelope recipient,
        which distinguishes the messages in the shared Maildir.
        """
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        messages = []
        for path in sorted(new.iterdir(), key=lambda path: path.stat().st_mtime_ns):
            data = path.read_bytes()
            recipients = parse(data).get_all("Delivered-To", [])
            if address.lower() in (str(recipient).lower() for recipient in recipients):
                messages.append(data)
        return messages

    def wait_for_mail(
        self, address: str, count: int = 1, timeout: float = 30.0
    ) -> list[bytes]:
        """Wait until ``count`` messages reached ``address`` and return their bytes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.delivered(address)
            if len(messages) >= count:
                return messages
            time.sleep(0.1)
        raise PostfixError(
            f"{len(self.delivered(address))} of {count} messages reached {address} "
            f"within {timeout:.0f} s; Postfix log:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no log written)"
        return "\n".join(
            self.log_file.read_text(errors="replace").splitlines()[-lines:]
        )

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now."""
        self.command("postqueue", "-f")

    def command(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        binary = shutil.which(program) or f"/usr/sbin/{program}"
        result = subprocess.run(
            [binary, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise PostfixError(
                f"{program} -c {self.config_dir} {' '.join(args)} failed with status "
                f"{result.returncode}:\n{result.stderr}{result.stdout}\n{self.log_tail()}"
            )
        return result

    def start(self) -> None:
        self.command(self.postfix, "start")
        self.running = True
        deadline = time.monotonic() + 20
        while not _port_open(self.port):
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"timed out after 20 s waiting for Postfix on 127.0.0.1:{self.port}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def master_pid(self) -> int | None:
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the instance and wait until its master process has exited."""
        if not self.running:
            return
        pid = self.master_pid()
        self.command(self.postfix, "stop")
        self.running = False
        deadline = time.monotonic() + timeout
        while pid is not None and _process_alive(pid):
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"the Postfix master (pid {pid}) still runs {timeout:.0f} s after stop"
                )
            time.sleep(0.1)

    def remove(self) -> None:
        """Stop the instance and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie (init here does not reap) counts as exited."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main_cf(instance: PostfixInstance, cert_file: Path, key_file: Path) -> str:
    """Return main.cf for ``instance``: loopback only, no mail leaves the machine."""
    root = instance.root
    return f"""\
compatibility_level = 3.6
config_directory = {instance.config_dir}
queue_directory = {root / "queue"}
data_directory = {root / "data"}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {instance.log_file}
maillog_file_prefixes = {root}

myhostname = {instance.hostname}
mydomain = sealmail.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
biff = no

# Nothing may leave the machine: every destination without an explicit
# route below fails at once with the error transport.
relayhost =
default_transport = error:no delivery outside the test instance
relay_transport = error:no such role address
fallback_transport =

# Customer mailboxes: one Maildir takes mail for every address in the
# domain; the Delivered-To header names the recipient.
virtual_mailbox_domains = {instance.mailbox_domain}
virtual_mailbox_base = {instance.maildir_base}
virtual_mailbox_maps = static:{instance.mailbox_domain}/mailbox/
virtual_uid_maps = static:{DELIVERY_UID}
virtual_gid_maps = static:{DELIVERY_GID}

# The provider's role addresses go to sealmail's LMTP server.
relay_domains = {" ".join(sorted({a.partition("@")[2] for a in instance.role_addresses}))}
relay_recipient_maps = texthash:{instance.config_dir / "role_addresses"}
transport_maps = texthash:{instance.config_dir / "transport"}

smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert_file}
smtpd_tls_key_file = {key_file}
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
# Loopback clients may send only to the domains above, never elsewhere.
smtpd_relay_restrictions = reject_unauth_destination
lmtp_tls_security_level = none

# A delivery failure should show up in the test, not after hours of retries.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
bounce_queue_lifetime = 0
maximal_queue_lifetime = 60s
"""


def create_instance(
    mailbox_domain: str,
    role_addresses: tuple[str, ...],
    *,
    port: int,
    lmtp_port: int,
    postfix: str = "postfix",
) -> PostfixInstance:
    """Write a private Postfix configuration under a new temporary directory."""
    # Postfix daemons run as the "postfix" user and must traverse the tree,
    # so the directory cannot keep mkdtemp's mode 0700.
    root = Path(tempfile.mkdtemp(prefix="sealmail-postfix-"))
    root.chmod(0o755)
    ca = trustme.CA()
    instance = PostfixInstance(
        root=root,
        port=port,
        lmtp_port=lmtp_port,
        mailbox_domain=mailbox_domain.lower(),
        role_addresses=tuple(address.lower() for address in role_addresses),
        ca=ca,
        ca_file=root / "ca.pem",
        postfix=postfix,
    )
    config = instance.config_dir
    config.mkdir(mode=0o755)
    ca.cert_pem.write_to_path(str(instance.ca_file))
    server_cert = ca.issue_cert("127.0.0.1", instance.hostname)
    cert_file = config / "server.pem"
    key_file = config / "server.key"
    server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)

    (config / "main.cf").write_text(main_cf(instance, cert_file, key_file))
    smtpd = f"127.0.0.1:{port} inet n - n - - smtpd\n"
    (config / "master.cf").write_text(smtpd + MASTER_SERVICES)
    (config / "role_addresses").write_text(
        "".join(f"{address} OK\n" for address in instance.role_addresses)
    )
    (config / "transport").write_text(
        "".join(
            f"{address} lmtp:inet:127.0.0.1:{lmtp_port}\n"
            for address in instance.role_addresses
        )
    )

    # "postfix start" creates the queue's subdirectories, but not the queue
    # directory itself; data_directory belongs to the mail_owner.
    (root / "queue").mkdir(mode=0o755)
    (root / "data").mkdir(mode=0o700)
    postfix_user = pwd.getpwnam("postfix")
    os.chown(root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
    instance.maildir_base.mkdir(mode=0o755)
    os.chown(instance.maildir_base, DELIVERY_UID, DELIVERY_GID)
    return instance


def parse(data: bytes) -> EmailMessage:
    """Parse delivered bytes with the modern ``email`` policy."""
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]
