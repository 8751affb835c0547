"""Django settings for sealmail, read from environment variables.

Every variable is listed in the README's configuration table. The defaults
run one instance on one machine from ``SEALMAIL_DATA_DIR``: SQLite for the
database and the task queue, and a Maildir for outgoing mail.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from sealmail.project.environment import (
    data_dir,
    env_addr,
    env_bool,
    env_int,
    env_int_list,
    env_mapping,
    env_networks,
    ensure_secret_key,
    huey_from_url,
    role_addresses,
    smtp_url,
)

DATA_DIR: Path = data_dir()
KEYS_DIR: Path = DATA_DIR / "keys"
MAILDIR: Path = DATA_DIR / "maildir"

SECRET_KEY = os.environ.get("SEALMAIL_SECRET_KEY") or ensure_secret_key(DATA_DIR)
DEBUG = env_bool("SEALMAIL_DEBUG", False)

SEALMAIL_FROM = os.environ.get("SEALMAIL_FROM", "noreply@provider.example")
SEALMAIL_ROLE_ADDRESSES = role_addresses(
    os.environ.get("SEALMAIL_ROLE_ADDRESSES", ""), SEALMAIL_FROM
)
SEALMAIL_SMTP_URL = smtp_url(
    os.environ.get("SEALMAIL_SMTP_URL", ""), MAILDIR, SEALMAIL_FROM
)
SEALMAIL_WEB_ADDR = env_addr("SEALMAIL_WEB_ADDR", "127.0.0.1:8000")
SEALMAIL_SMTPD_ADDR = env_addr("SEALMAIL_SMTPD_ADDR", "127.0.0.1:2525")
SEALMAIL_BASE_URL = os.environ.get(
    "SEALMAIL_BASE_URL", f"http://{SEALMAIL_WEB_ADDR[0]}:{SEALMAIL_WEB_ADDR[1]}"
).rstrip("/")
SEALMAIL_SMTPD_MAX_BYTES = env_int("SEALMAIL_SMTPD_MAX_BYTES", 25 * 1024 * 1024)
SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES = env_int(
    "SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES", 64 * 1024 * 1024
)
SEALMAIL_INBOUND_ACKNOWLEDGE = env_bool("SEALMAIL_INBOUND_ACKNOWLEDGE", True)
# Outgoing mail: sign mail to contacts without a key; retry temporary delivery
# failures after SEALMAIL_SEND_RETRY_SECONDS, doubling each time, up to
# SEALMAIL_SEND_MAX_ATTEMPTS attempts.
SEALMAIL_SIGN_PLAIN = env_bool("SEALMAIL_SIGN_PLAIN", False)
SEALMAIL_SEND_RETRY_SECONDS = env_int("SEALMAIL_SEND_RETRY_SECONDS", 60)
SEALMAIL_SEND_MAX_ATTEMPTS = env_int("SEALMAIL_SEND_MAX_ATTEMPTS", 10)
# Room for a message with 15 MiB of base64 attachments in one API call.
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
# Portal: how long a confirmation link stays valid, and the rate limits on
# change requests (per contact and per client address, each per hour) and on
# failed logins (per user name and client address, per 15 minutes).
SEALMAIL_CONFIRM_HOURS = env_int("SEALMAIL_CONFIRM_HOURS", 24)
SEALMAIL_CHANGE_LIMIT_CONTACT = env_int("SEALMAIL_CHANGE_LIMIT_CONTACT", 5)
SEALMAIL_CHANGE_LIMIT_CLIENT = env_int("SEALMAIL_CHANGE_LIMIT_CLIENT", 20)
SEALMAIL_LOGIN_MAX_FAILURES = env_int("SEALMAIL_LOGIN_MAX_FAILURES", 5)

# Notifications: changes of a line within this many seconds of the first
# change go out as one summary mail.
SEALMAIL_FLAP_WINDOW_SECONDS = env_int("SEALMAIL_FLAP_WINDOW_SECONDS", 300)
# Days before a contact key stops being usable on which its contact is warned.
SEALMAIL_KEY_WARNING_DAYS = env_int_list("SEALMAIL_KEY_WARNING_DAYS", [30, 7, 1])
# UTC hour of the daily key check (re-validation, WKD refresh, expiry warnings).
SEALMAIL_KEY_CHECK_HOUR = env_int("SEALMAIL_KEY_CHECK_HOUR", 3)
# Mail domains whose provider keys are published by Web Key Directory;
# by default the domains of SEALMAIL_FROM and the role addresses.
SEALMAIL_WKD_DOMAINS = [
    domain.strip().lower()
    for domain in os.environ.get("SEALMAIL_WKD_DOMAINS", "").split(",")
    if domain.strip()
] or sorted(
    {address.rpartition("@")[2] for address in [SEALMAIL_FROM, *SEALMAIL_ROLE_ADDRESSES]}
)
# DOMAIN=URL pairs that send WKD lookups for DOMAIN to URL instead of the
# domain's own web server (an internal mirror), and a CA bundle to trust.
SEALMAIL_WKD_URLS = env_mapping("SEALMAIL_WKD_URLS")
SEALMAIL_WKD_CA_FILE = os.environ.get("SEALMAIL_WKD_CA_FILE", "")

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("SEALMAIL_ALLOWED_HOSTS", "").split(",")
    if host.strip()
] or ["127.0.0.1", "localhost", "[::1]"]
_base_host = SEALMAIL_BASE_URL.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
if _base_host and _base_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_base_host)
# Web Key Directory clients ask DOMAIN (direct layout) and
# openpgpkey.DOMAIN (advanced layout).
for _domain in SEALMAIL_WKD_DOMAINS:
    for _host in (_domain, f"openpgpkey.{_domain}"):
        if _host not in ALLOWED_HOSTS:
            ALLOWED_HOSTS.append(_host)
CSRF_TRUSTED_ORIGINS = [SEALMAIL_BASE_URL]
# Reverse proxies in front of `sealmail web`. Only a request whose peer is one
# of them has its client address taken from X-Forwarded-For, as
# sealmail.project.proxies describes. An empty list trusts no proxy.
SEALMAIL_TRUSTED_PROXIES = env_networks("SEALMAIL_TRUSTED_PROXIES")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "huey.contrib.djhuey",
    # Serves the API docs page with Swagger UI from the static files instead
    # of a CDN, which the Content-Security-Policy would block.
    "ninja",
    "sealmail.keys",
    "sealmail.contacts",
    "sealmail.outbox",
    "sealmail.inbound",
    "sealmail.notifications",
    "sealmail.api",
    "sealmail.server",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "sealmail.project.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sealmail.project.urls"
WSGI_APPLICATION = "sealmail.project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [DATA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'sealmail.sqlite3'}",
        conn_max_age=env_int("SEALMAIL_DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web, worker and inbound processes share one file;
    # the busy timeout makes a writer wait for a lock rather than fail.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

HUEY = huey_from_url(
    os.environ.get("SEALMAIL_QUEUE_URL", ""),
    DATA_DIR / "queue.sqlite3",
    immediate=env_bool("SEALMAIL_QUEUE_IMMEDIATE", False),
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("SEALMAIL_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = SEALMAIL_BASE_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    # Confirmation and password reset links carry tokens in their paths.
    "filters": {"redact_tokens": {"()": "sealmail.contacts.logfilters.RedactTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("SEALMAIL_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["redact_tokens"]},
        "django.server": {
            "handlers": ["console"],
            "filters": ["redact_tokens"],
            "level": "INFO",
            "propagate": False,
        },
        # A handler of its own stops run_huey from adding a second one.
        "huey": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
