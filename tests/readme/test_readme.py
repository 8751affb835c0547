"""The README, tried as a new user would: every shell command it shows is run.

The walkthrough starts from an empty working directory, where only the
virtualenv, the Makefile and its inputs are linked in. It runs what
``make run`` runs on free loopback ports, and follows the README from the
staff login to an encrypted invoice read with gpg. The steps the README
describes in words (admin forms, the portal, the confirmation link) go
through HTTP forms the way a browser submits them.

Each README command is taken in order by the step that runs it, and the test
fails when the README shows a command no step takes, so the README and this
test cannot drift apart. Two commands are not run here: ``make test`` runs
this suite itself, and ``make run`` is replaced by the commands of its recipe
(``make -n run``) so the virtualenv is reused instead of rebuilt.
"""

from __future__ import annotations

import email
import email.policy
import html.parser
import http.cookiejar
import os
import quopri
import re
import shlex
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import free_port, port_open, require_tool

REPO = Path(__file__).resolve().parents[2]
README_PORT_URL = "http://127.0.0.1:8000"
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/\d+/[A-Za-z0-9_-]+/")
INVOICE_PDF = (REPO / "docs" / "examples" / "invoice.pdf").read_bytes()
ADMIN_PASSWORD = "staff-Passw0rd-for-the-README-test"
PORTAL_PASSWORD = "alice-Passw0rd-for-the-README-test"


# --- reading the README -------------------------------------------------------


def split_commands(block: str) -> list[str]:
    """Split a shell block into commands, keeping quoted newlines and continuations."""
    commands, current, quote, escaped = [], [], "", False
    for char in block:
        if escaped:
            escaped = False
            if char == "\n" and not quote:
                current[-1] = " "  # a line continuation: drop the backslash
            else:
                current.append(char)
            continue
        if char == "\\" and quote != "'":
            escaped = True
            current.append(char)
            continue
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "\n":
            command = "".join(current).strip()
            if command and not command.startswith("#"):
                commands.append(command)
            current = []
            continue
        current.append(char)
    command = "".join(current).strip()
    if command and not command.startswith("#"):
        commands.append(command)
    return commands


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [command for block in blocks for command in split_commands(block)]


class Readme:
    """The README's commands, handed out in order to the steps that run them."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.position = 0

    def take(self, pattern: str) -> str:
        """Return the next command, which must match the regular expression ``pattern``."""
        assert self.position < len(self.commands), (
            f"the README has no command {pattern!r} left"
        )
        command = self.commands[self.position]
        assert re.match(pattern, command), (
            f"README command {self.position + 1} is {command!r}, but the walkthrough "
            f"expects one matching {pattern!r} here; update the README or this test"
        )
        self.position += 1
        return command

    def assert_all_taken(self) -> None:
        rest = self.commands[self.position :]
        assert not rest, f"README commands that no step of this test runs: {rest}"


def test_split_commands_keeps_quotes() -> None:
    block = "a 'x\ny'\nb \\\n  c\n# comment\nd \"$(e)\"\n"
    assert split_commands(block) == ["a 'x\ny'", "b    c", 'd "$(e)"']


# --- running commands as a user ----------------------------------------------


@dataclass
class Shell:
    """Runs README commands with bash in the walkthrough's working directory.

    Variables a command assigns (``TOKEN=...``) carry over to later commands,
    as in one terminal session.
    """

    cwd: Path
    env: dict[str, str]
    base_url: str
    history: list[tuple[str, subprocess.CompletedProcess[str]]] = field(
        default_factory=list
    )

    def run(
        self, command: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        localized = command.replace(README_PORT_URL, self.base_url)
        env_file = self.cwd / ".readme-env"
        script = f"set -a\n{localized}\nstatus=$?\nenv -0 > {shlex.quote(str(env_file))}\nexit $status\n"
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.history.append((command, result))
        assert result.returncode == 0, (
            f"README command failed with status {result.returncode}: {command}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        if env_file.exists():
            pairs = env_file.read_text().split("\0")
            self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        return result


# --- driving HTML forms ------------------------------------------------------


class FormParser(html.parser.HTMLParser):
    """Collect the forms of a page with the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""), "fields": []})
            return
        if not self.forms:
            return
        fields: list[tuple[str, str]] = self.forms[-1]["fields"]  # type: ignore[assignment]
        name = attributes.get("name")
        if tag == "input" and name:
            kind = attributes.get("type", "text").lower()
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attributes:
                return
            fields.append(
                (name, attributes.get("value", "on" if kind == "checkbox" else ""))
            )
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            fields.append((self._select, attributes.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea = name
            fields.append((name, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            fields: list[tuple[str, str]] = self.forms[-1]["fields"]  # type: ignore[assignment]
            name, value = fields[-1]
            fields[-1] = (name, value + data)


class Browser:
    """A cookie-keeping HTTP client that submits forms like a browser."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.url = base_url

    def get(self, path: str) -> str:
        return self._open(
            urllib.request.Request(urllib.parse.urljoin(self.base_url, path))
        )

    def _open(self, request: urllib.request.Request) -> str:
        with self.opener.open(request, timeout=60) as response:
            self.url = response.geturl()
            return response.read().decode("utf-8")

    def submit(
        self,
        path: str,
        *,
        form_index: int = -1,
        overrides: dict[str, str | list[str]] | None = None,
    ) -> str:
        """Load ``path``, fill its form with ``overrides`` and submit it."""
        page = self.get(path)
        parser = FormParser()
        parser.feed(page)
        assert parser.forms, f"no form on {self.url}"
        form = parser.forms[form_index]
        fields: list[tuple[str, str]] = list(form["fields"])  # type: ignore[arg-type]
        for name, value in (overrides or {}).items():
            fields = [(key, old) for key, old in fields if key != name]
            values = value if isinstance(value, list) else [value]
            fields += [(name, item) for item in values]
        action = urllib.parse.urljoin(self.url, str(form["action"]) or self.url)
        request = urllib.request.Request(
            action,
            data=urllib.parse.urlencode(fields).encode(),
            headers={
                "Referer": self.url,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        return self._open(request)


# --- the instance ------------------------------------------------------------


@dataclass
class Instance:
    workdir: Path
    shell: Shell
    base_url: str
    serve: subprocess.Popen[bytes] | None = None

    @property
    def maildir_new(self) -> Path:
        return self.workdir / "var" / "maildir" / "new"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    """An empty working directory as after a clone, with free ports for the servers."""
    require_tool("make", "make")
    require_tool("curl", "curl")
    require_tool("gpg", "gnupg")
    workdir = tmp_path / "sealmail"
    workdir.mkdir()
    for name in (".venv", "Makefile", "pyproject.toml", "requirements.lock", "scripts", "docs"):
        (workdir / name).symlink_to(REPO / name)
    gnupg_home = tmp_path / "gnupg"
    gnupg_home.mkdir(mode=0o700)
    # The customer's gpg, set up so that it never waits for a passphrase.
    (gnupg_home / "gpg.conf").write_text("batch\npinentry-mode loopback\npassphrase \n")
    (gnupg_home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")

    web_port, smtpd_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{web_port}"
    # A new user's environment: none of the test session's SEALMAIL_ settings.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SEALMAIL_")
    }
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "SEALMAIL_WEB_ADDR": f"127.0.0.1:{web_port}",
            "SEALMAIL_SMTPD_ADDR": f"127.0.0.1:{smtpd_port}",
            "SEALMAIL_WEB_WORKERS": "1",
            "GNUPGHOME": str(gnupg_home),
        }
    )
    shell = Shell(workdir, env, base_url)
    made = Instance(workdir, shell, base_url)
    try:
        yield made
    finally:
        if made.serve is not None and made.serve.poll() is None:
            made.serve.send_signal(signal.SIGINT)
            try:
                made.serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                made.serve.kill()
                made.serve.wait()
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupg_home), "--kill", "gpg-agent"],
            capture_output=True,
            timeout=30,
            check=False,
        )


def make_run(instance: Instance, readme: Readme) -> None:
    """Run the recipe of ``make run``: every step in order, then serve in the background."""
    readme.take(r"make run$")
    recipe = subprocess.run(
        ["make", "-n", "run"],
        cwd=instance.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert recipe.returncode == 0, recipe.stderr
    steps = [
        line
        for line in recipe.stdout.splitlines()
        if line.startswith(".venv/bin/sealmail ")
    ]
    assert steps[-1] == ".venv/bin/sealmail serve", steps
    for step in steps[:-1]:
        result = instance.shell.run(step)
        if step.endswith(" welcome"):
            assert instance.base_url in result.stdout + result.stderr
    instance.serve = subprocess.Popen(
        shlex.split(steps[-1]), cwd=instance.workdir, env=instance.shell.env
    )
    host, port = instance.shell.env["SEALMAIL_SMTPD_ADDR"].split(":")
    deadline = time.monotonic() + 60
    while not (
        port_open(host, int(port))
        and port_open("127.0.0.1", int(instance.base_url.rsplit(":", 1)[1]))
    ):
        assert instance.serve.poll() is None, (
            f"serve exited with status {instance.serve.returncode}"
        )
        assert time.monotonic() < deadline, (
            "serve did not open the web and SMTP ports within 60 s"
        )
        time.sleep(0.2)


def newest_mail(instance: Instance) -> Path:
    files = sorted(
        instance.maildir_new.iterdir(), key=lambda path: path.stat().st_mtime_ns
    )
    return files[-1]


def wait_for_sent(
    instance: Instance, message_ids: list[int], timeout: float = 60
) -> None:
    """Poll the API until the worker has sent every message in ``message_ids``."""
    token = instance.shell.env["TOKEN"]
    deadline = time.monotonic() + timeout
    for message_id in message_ids:
        while True:
            request = urllib.request.Request(
                f"{instance.base_url}/api/v1/messages/{message_id}",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                status = json_load(response.read())["status"]
            if status == "sent":
                break
            assert status == "queued", f"message {message_id} is {status}"
            assert time.monotonic() < deadline, (
                f"message {message_id} not sent in {timeout} s"
            )
            time.sleep(0.2)


def json_load(data: bytes) -> dict:
    import json

    return json.loads(data)


def decrypted_mime(output: str) -> email.message.EmailMessage:
    return email.message_from_string(output, policy=email.policy.default)  # type: ignore[return-value]


def read_newest_with_gpg(
    instance: Instance, readme: Readme, message_id: str
) -> tuple[str, str]:
    """Run the README's gpg command on the newest mail, which must be ``message_id``."""
    newest = newest_mail(instance)
    outer = email.message_from_bytes(newest.read_bytes(), policy=email.policy.default)
    assert outer["Message-ID"].strip() == message_id.strip(), "another mail is newer"
    assert outer.get_content_type() == "multipart/encrypted"
    result = instance.shell.run(readme.take(r"gpg --decrypt "))
    return result.stdout, result.stderr


# --- the walkthrough ---------------------------------------------------------


def test_readme_walkthrough(instance: Instance) -> None:
    readme = Readme(readme_commands())
    shell = instance.shell

    make_run(instance, readme)

    # Quick start: the staff login, created non-interactively.
    command = readme.take(r"\.venv/bin/sealmail createsuperuser$")
    shell.env["DJANGO_SUPERUSER_PASSWORD"] = ADMIN_PASSWORD
    shell.run(f"{command} --noinput --username staff --email staff@provider.example")

    # A first encrypted invoice.
    shell.run(readme.take(r"TOKEN=\$\(\.venv/bin/sealmail apitoken create "))
    assert shell.env["TOKEN"]
    created = shell.run(
        readme.take(r"curl -sS http://127\.0\.0\.1:8000/api/v1/customers ")
    )
    customer = json_load(created.stdout.encode())
    assert customer["account_number"] == "K-1001", created.stdout
    [contact] = customer["contacts"]
    assert contact["address"] == "alice@example.org"

    # Staff admin: a user for the customer, chosen on the customer's page.
    admin = Browser(instance.base_url)
    admin.submit(
        "/admin/login/?next=/admin/",
        overrides={"username": "staff", "password": ADMIN_PASSWORD},
    )
    assert "/admin/login/" not in admin.url, "staff login failed"
    admin.submit(
        "/admin/auth/user/add/",
        overrides={
            "username": "alice",
            "password1": PORTAL_PASSWORD,
            "password2": PORTAL_PASSWORD,
        },
    )
    user_id = re.search(r"/admin/auth/user/(\d+)/change/", admin.url).group(1)
    listing = admin.get("/admin/contacts/customer/?q=K-1001")
    customer_path = re.search(
        r'href="(/admin/contacts/customer/\d+/change/)', listing
    ).group(1)
    admin.submit(customer_path, overrides={"users": [user_id]})
    assert re.search(r"/admin/contacts/customer/(\?|$)", admin.url), admin.url

    # The customer's key, made with gpg.
    shell.run(readme.take(r"gpg --quick-generate-key "))
    shell.run(readme.take(r"gpg --armor --export alice@example\.org > alice\.asc$"))
    key_text = (instance.workdir / "alice.asc").read_text()
    assert key_text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    shell.run(
        readme.take(
            r"curl -sS http://127\.0\.0\.1:8000/provider-keys\.asc \| gpg --import$"
        )
    )

    # The portal: log in, paste the key, save.
    portal = Browser(instance.base_url)
    portal.submit(
        "/accounts/login/", overrides={"username": "alice", "password": PORTAL_PASSWORD}
    )
    home = portal.get("/")
    contact_path = re.search(r'href="(/contacts/\d+/)"', home).group(1)
    portal.submit(contact_path, overrides={"key_text": key_text, "action": "save"})
    deadline = time.monotonic() + 60
    while not (instance.maildir_new.is_dir() and any(instance.maildir_new.iterdir())):
        assert time.monotonic() < deadline, "no confirmation mail within 60 s"
        time.sleep(0.2)

    # The confirmation mail, read with the README's gpg command.
    confirmation = newest_mail(instance)
    shell_result = shell.run(readme.take(r"gpg --decrypt "))
    text = quopri.decodestring(shell_result.stdout.encode()).decode("utf-8")
    assert confirmation.exists()
    link = CONFIRM_LINK.search(text)
    assert link, f"no confirmation link in:\n{text}"
    assert link.group(0).startswith(instance.base_url)
    page = portal.submit(link.group(0))
    assert "alice@example.org" in page

    # The invoice from the command line.
    sent = shell.run(readme.take(r"\.venv/bin/sealmail send --customer K-1001 "))
    [line] = sent.stdout.strip().splitlines()
    cli_id, address, cli_message_id = line.split()[:3]
    assert address == "alice@example.org"
    wait_for_sent(instance, [int(cli_id)])

    # The invoice through the API.
    answered = shell.run(
        readme.take(r"curl -sS http://127\.0\.0\.1:8000/api/v1/messages ")
    )
    [api_message] = json_load(answered.stdout.encode())["messages"]
    wait_for_sent(instance, [api_message["id"]])

    # Both invoices, read with gpg: the API one is the newest.
    output, log = read_newest_with_gpg(instance, readme, api_message["message_id"])
    assert "Good signature from" in log, log
    inner = decrypted_mime(output)
    assert inner["Subject"] == "Your invoice for January"
    assert (
        "Amount due: 17.50 EUR"
        in inner.get_body(preferencelist=("plain",)).get_content()
    )
    [pdf] = [
        part
        for part in inner.iter_attachments()
        if part.get_filename() == "invoice.pdf"
    ]
    assert pdf.get_payload(decode=True) == INVOICE_PDF
    readme.take(r"make test$")  # runs this suite; .ci/run does
    readme.assert_all_taken()

    cli_mail = next(
        path
        for path in instance.maildir_new.iterdir()
        if cli_message_id in path.read_text(errors="replace")
    )
    result = shell.run(f"gpg --decrypt {shlex.quote(str(cli_mail))}")
    inner = decrypted_mime(result.stdout)
    assert inner["Subject"] == "Your invoice for December"
    assert (
        "Amount due: 42.00 EUR"
        in inner.get_body(preferencelist=("plain",)).get_content()
    )
    [pdf] = [
        part
        for part in inner.iter_attachments()
        if part.get_filename() == "invoice.pdf"
    ]
    assert pdf.get_payload(decode=True) == INVOICE_PDF
    assert "Good signature from" in result.stderr

    # Ctrl-C stops serve and everything it started.
    assert instance.serve is not None
    instance.serve.send_signal(signal.SIGINT)
    assert instance.serve.wait(timeout=30) == 0
