"""Security: archive bombs spread over many members, the lifetime and size of uploads, server paths kept out
of messages, private file modes, safe redirects, hashed expiring API tokens, login throttling, deployment
settings, and API keys kept out of stored LLM errors."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from curation import generation, ingest
from curation.llm import LLMError, OpenAICompatibleClient
from curation.models import CodeSample, IngestRun, Instance, LLMCall, PoolExample
from tests.fakes.openai_stub import OpenAIStub
from tests.fakes.responders import responder

from .corpus_factory import zip_bytes
from .pipeline_factory import make_selection

ROOT = Path(__file__).resolve().parents[2]
GOOD_PY = '''def celsius_to_fahrenheit(celsius):
    """Convert a temperature from Celsius to Fahrenheit."""
    return celsius * 9 / 5 + 32
'''


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _errors(run: IngestRun) -> dict[str, str]:
    return {entry["path"]: entry["error"] for entry in run.report["errors"]}


def _upload(api: APIClient | object, name: str, data: bytes, capture) -> object:
    with capture(execute=False):
        return api.post("/api/ingest-runs/", {"upload": SimpleUploadedFile(name, data)})


# ---------------------------------------------------------------------------------------------------------
# Archives: the limits hold across members, not only per member


@pytest.mark.django_db
def test_zip_bomb_split_into_many_small_members_is_stopped(tmp_path):
    path = tmp_path / "split-bomb.zip"
    megabyte = bytes(1024 * 1024)  # each member sits exactly at the per-member floor, ~1000:1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.py", GOOD_PY)
        for n in range(60):
            zf.writestr(f"zeros/{n:02}.txt", megabyte)
    run = ingest.run_ingest(ingest.create_ingest_run(path).pk)
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert CodeSample.objects.filter(ingest_run=run, func_name="celsius_to_fahrenheit").exists()
    refusals = [e for e in _errors(run).values() if "possible decompression bomb" in e]
    assert refusals and "stopped unpacking" in refusals[0], _errors(run)
    # 60 MB from a ~70 KB archive is 850:1; unpacking stopped near 200:1, well before the end.
    assert run.report["files_seen"] < 30


@pytest.mark.django_db
def test_zip_total_size_is_counted_across_members(tmp_path, settings):
    settings.INGEST_MAX_ARCHIVE_BYTES = 200 * 1024
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("good.py", GOOD_PY)
        for n in range(10):
            zf.writestr(f"blob{n}.bin", os.urandom(50 * 1024))
    run = ingest.run_ingest(ingest.create_ingest_run(path).pk)
    over = [name for name, e in _errors(run).items() if "would unpack to more than" in e]
    assert over and run.report["files_seen"] <= 5


# ---------------------------------------------------------------------------------------------------------
# Uploads: deleted once read, capped in size, private


@pytest.mark.django_db
def test_an_ingest_upload_is_deleted_once_its_run_has_read_it(
    curator_client, django_capture_on_commit_callbacks
):
    response = _upload(curator_client, "corpus.zip", zip_bytes(), django_capture_on_commit_callbacks)
    assert response.status_code == 201, response.content
    run = IngestRun.objects.get(pk=response.json()["id"])
    stored = Path(run.upload_path)
    assert stored.is_file()
    assert _mode(stored) == 0o600
    run = ingest.run_ingest(run.pk)
    assert run.status == IngestRun.Status.SUCCEEDED and run.kept_count > 0
    assert not stored.exists()


@pytest.mark.django_db
def test_an_ingest_upload_is_deleted_when_its_run_fails(
    curator_client, django_capture_on_commit_callbacks, monkeypatch
):
    response = _upload(curator_client, "corpus.zip", zip_bytes(), django_capture_on_commit_callbacks)
    run = IngestRun.objects.get(pk=response.json()["id"])

    def explode(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(ingest._Ingest, "ingest_source", explode)
    run = ingest.run_ingest(run.pk)
    assert run.status == IngestRun.Status.FAILED
    assert not Path(run.upload_path).exists()


@pytest.mark.django_db
def test_the_upload_of_a_run_cancelled_before_it_started_is_deleted(
    curator_client, django_capture_on_commit_callbacks
):
    response = _upload(curator_client, "corpus.zip", zip_bytes(), django_capture_on_commit_callbacks)
    run = IngestRun.objects.get(pk=response.json()["id"])
    run.finish(IngestRun.Status.CANCELLED)
    ingest.run_ingest(run.pk)
    assert not Path(run.upload_path).exists()


@pytest.mark.django_db
def test_ingest_uploads_over_the_size_limit_are_refused_through_the_api(
    curator_client, settings, django_capture_on_commit_callbacks
):
    settings.INGEST_MAX_UPLOAD_BYTES = 1000
    before = set(settings.UPLOADS_DIR.glob("*")) if settings.UPLOADS_DIR.exists() else set()
    response = _upload(curator_client, "big.zip", os.urandom(5000), django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert "over the" in response.json()["detail"] and "limit" in response.json()["detail"]
    assert not IngestRun.objects.exists()
    after = set(settings.UPLOADS_DIR.glob("*")) if settings.UPLOADS_DIR.exists() else set()
    assert after == before


@pytest.mark.django_db
def test_ingest_uploads_over_the_size_limit_are_refused_on_the_page(curator_client, settings):
    settings.INGEST_MAX_UPLOAD_BYTES = 1000
    response = curator_client.post(
        reverse("ingest-new"),
        {"upload": SimpleUploadedFile("big.zip", os.urandom(5000)), "min_chars": 50, "max_chars": 800},
    )
    assert response.status_code == 200
    assert b"over the" in response.content
    assert not IngestRun.objects.exists()


@pytest.mark.django_db
def test_a_request_over_every_upload_limit_is_refused_before_it_is_read(
    curator_client, settings, monkeypatch
):
    from django.core.files import uploadhandler

    settings.INGEST_MAX_UPLOAD_BYTES = settings.IMPORT_MAX_BYTES = 1000
    started: list[str] = []
    for handler in (uploadhandler.MemoryFileUploadHandler, uploadhandler.TemporaryFileUploadHandler):
        monkeypatch.setattr(handler, "new_file", lambda self, *args, **kwargs: started.append("file"))
    big = os.urandom(1100 * 1024)  # over the limit plus the allowance for the form's other fields
    response = curator_client.post("/api/ingest-runs/", {"upload": SimpleUploadedFile("big.zip", big)})
    assert response.status_code == 400
    assert "over the" in response.json()["upload"][0]
    page = curator_client.post(
        reverse("ingest-new"),
        {"upload": SimpleUploadedFile("big.zip", big), "min_chars": 50, "max_chars": 800},
    )
    assert page.status_code == 400 and b"WAVECODER_MAX_UPLOAD_MB" in page.content
    assert started == [] and not IngestRun.objects.exists()


# ---------------------------------------------------------------------------------------------------------
# No server paths in what people see


def _server_folders(settings) -> list[str]:
    return [str(settings.VAR_DIR), str(settings.UPLOADS_DIR), tempfile.gettempdir()]


@pytest.mark.django_db
def test_an_upload_of_an_unknown_kind_is_named_by_its_own_name(
    curator_client, settings, django_capture_on_commit_callbacks
):
    response = _upload(curator_client, "notes.txt", b"hello", django_capture_on_commit_callbacks)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "notes.txt" in detail
    assert not any(folder in detail for folder in _server_folders(settings)), detail


@pytest.mark.django_db
def test_an_uploaded_run_shows_the_upload_name_not_where_it_was_stored(
    curator_client, settings, django_capture_on_commit_callbacks
):
    response = _upload(curator_client, "corpus.zip", zip_bytes(), django_capture_on_commit_callbacks)
    run = IngestRun.objects.get(pk=response.json()["id"])
    assert run.source.location == "corpus.zip"
    page = curator_client.get(reverse("ingest-detail", args=[run.pk])).content.decode()
    assert str(settings.UPLOADS_DIR) not in page and str(settings.VAR_DIR) not in page


@pytest.mark.django_db
def test_a_vanished_upload_fails_its_run_naming_the_upload(
    curator_client, settings, django_capture_on_commit_callbacks
):
    response = _upload(curator_client, "corpus.zip", zip_bytes(), django_capture_on_commit_callbacks)
    run = IngestRun.objects.get(pk=response.json()["id"])
    Path(run.upload_path).unlink()
    run = ingest.run_ingest(run.pk)
    assert run.status == IngestRun.Status.FAILED
    assert "corpus.zip" in run.error
    assert not any(folder in run.error for folder in _server_folders(settings)), run.error


@pytest.mark.django_db
def test_archive_member_errors_do_not_show_the_temporary_folder(tmp_path, settings):
    long_name = "x" * 300 + ".py"  # over the file system's 255-byte name limit: unpacking it fails
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("good.py", GOOD_PY)
        zf.writestr(long_name, GOOD_PY)
    run = ingest.run_ingest(ingest.create_ingest_run(path).pk)
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    error = _errors(run)[long_name]
    assert "name too long" in error.lower()
    assert not any(folder in error for folder in _server_folders(settings)), error


# ---------------------------------------------------------------------------------------------------------
# Private file modes


def _settings_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_BROKER_URL"))
    }
    env.update(
        WAVECODER_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="wavecoder_site.settings", HF_HUB_OFFLINE="1"
    )
    env.update(extra)
    return env


# chmod is disabled: whatever is private must have been created private, with no world-readable moment.
_NO_CHMOD = """
import os, pathlib
os.chmod = lambda *args, **kwargs: None
pathlib.Path.chmod = lambda *args, **kwargs: None
import django
django.setup()
from django.db import connection
connection.ensure_connection()
"""


def test_the_database_secret_key_and_var_folders_are_private_from_the_start(tmp_path):
    var = tmp_path / "var"
    done = subprocess.run(
        [sys.executable, "-c", _NO_CHMOD],
        cwd=ROOT,
        env=_settings_env(var),
        capture_output=True,
        text=True,
        umask=0o022,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _mode(var / "secret_key") == 0o600
    assert _mode(var / "db.sqlite3") == 0o600
    assert _mode(var) == 0o700
    for folder in ("broker", "broker/queue", "broker/processed", "broker/control"):
        assert _mode(var / folder) == 0o700, folder


def test_an_existing_world_readable_database_and_key_are_made_private(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    for name in ("db.sqlite3", "secret_key"):
        (var / name).write_text("" if name == "db.sqlite3" else "k" * 50)
        (var / name).chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=_settings_env(var),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _mode(var / "db.sqlite3") == 0o600 and _mode(var / "secret_key") == 0o600
    assert not _mode(var) & 0o007


@pytest.mark.django_db
def test_demo_accounts_file_is_private_from_the_start(tmp_path, settings, monkeypatch):
    from curation.management.commands.demo_setup import Command

    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    monkeypatch.setattr(Path, "chmod", lambda *args, **kwargs: None)
    old = os.umask(0o022)
    try:
        accounts = Command()._accounts()
        again = Command()._accounts()  # rewritten: still private
    finally:
        os.umask(old)
    assert accounts == again
    assert _mode(tmp_path / "demo-accounts.json") == 0o600
    assert json.loads((tmp_path / "demo-accounts.json").read_text()) == accounts


# ---------------------------------------------------------------------------------------------------------
# Redirects


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_pool_actions_do_not_redirect_to_other_sites(decided, curator_client, target):
    example = PoolExample.objects.first()
    response = curator_client.post(reverse("pool-action", args=[example.pk, "pin"]), {"next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("pool-list")


def test_pool_actions_follow_a_next_within_the_site(decided, curator_client):
    example = PoolExample.objects.first()
    target = reverse("pool-list") + "?task=generation&page=2"
    response = curator_client.post(reverse("pool-action", args=[example.pk, "pin"]), {"next": target})
    assert response["Location"] == target


# ---------------------------------------------------------------------------------------------------------
# API tokens: hashed, expiring, revoked when the password changes


def _issue(user) -> str:
    from curation.tokens import issue_token

    return issue_token(user)


def _api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_api_tokens_work_with_the_token_header(curator):
    assert _api(_issue(curator)).get("/api/samples/").status_code == 200
    assert _api("0" * 64).get("/api/samples/").status_code == 401


def test_api_tokens_are_not_stored_as_given(curator):
    key = _issue(curator)
    tables = [t for t in connection.introspection.table_names() if "token" in t.lower()]
    assert tables
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                assert not any(key in str(value) for value in row), table


def test_api_tokens_expire(curator, settings, monkeypatch):
    key = _issue(curator)
    ttl = getattr(settings, "API_TOKEN_TTL", timedelta(days=365))
    later = timezone.now() + ttl + timedelta(days=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert _api(key).get("/api/samples/").status_code == 401


def test_api_tokens_die_when_the_password_changes(curator):
    key = _issue(curator)
    assert _api(key).get("/api/samples/").status_code == 200
    curator.set_password("a new password, long enough")
    curator.save()
    assert _api(key).get("/api/samples/").status_code == 401


def test_other_saves_of_the_user_keep_the_tokens(curator):
    key = _issue(curator)
    curator.first_name = "Carl"
    curator.save()
    curator.check_password("pw-carl")  # a login may re-hash the same password: not a change
    assert _api(key).get("/api/samples/").status_code == 200


@pytest.mark.django_db
def test_the_api_token_command_prints_a_working_token(curator, capsys):
    from django.core.management import call_command

    call_command("api_token", "carl", "--days", "2")
    key = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    assert _api(key).get("/api/samples/").status_code == 200


def test_tokens_made_in_the_django_admin_expire_and_are_shown_once(client, admin_user, curator):
    from knox.models import AuthToken

    client.force_login(admin_user)
    form = client.get("/admin/knox/authtoken/add/")
    assert form.status_code == 200
    expiry = timezone.localtime(timezone.now() + timedelta(days=3))
    day, time = expiry.strftime("%Y-%m-%d"), expiry.strftime("%H:%M:%S")
    response = client.post(
        "/admin/knox/authtoken/add/", {"user": curator.pk, "expiry_0": day, "expiry_1": time}, follow=True
    )
    token = AuthToken.objects.get(user=curator)
    assert token.expiry is not None
    shown = [str(m) for m in response.context["messages"] if str(m).startswith("TOKEN ")]
    assert len(shown) == 1
    assert _api(shown[0].removeprefix("TOKEN ")).get("/api/samples/").status_code == 200
    blank = client.post("/admin/knox/authtoken/add/", {"user": curator.pk, "expiry_0": "", "expiry_1": ""})
    assert blank.status_code == 200 and AuthToken.objects.filter(user=curator).count() == 1


# ---------------------------------------------------------------------------------------------------------
# Login throttling


def _log_in(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_repeated_failed_logins_lock_the_login_for_a_while(client, curator, reviewer, settings):
    settings.AXES_FAILURE_LIMIT = 3
    assert [_log_in(client, "carl", "wrong").status_code for _ in range(3)] == [200, 200, 429]
    locked = _log_in(client, "carl", "pw-carl")  # the right password, too late
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert b"Too many failed logins" in locked.content
    # Another account from the same address is not locked out by someone guessing carl's password.
    assert _log_in(client, "rita", "pw-rita").status_code == 302


def test_a_successful_login_resets_the_count(client, curator, settings):
    settings.AXES_FAILURE_LIMIT = 3
    _log_in(client, "carl", "wrong")
    _log_in(client, "carl", "wrong")
    assert _log_in(client, "carl", "pw-carl").status_code == 302
    client.logout()
    _log_in(client, "carl", "wrong")
    assert _log_in(client, "carl", "pw-carl").status_code == 302


def test_the_test_clients_login_and_force_login_still_work(client, curator):
    assert client.login(username="carl", password="pw-carl") is True
    assert client.get(reverse("dashboard")).status_code == 200
    client.logout()
    client.force_login(curator)
    assert client.get(reverse("dashboard")).status_code == 200


# ---------------------------------------------------------------------------------------------------------
# Deployment settings


def _manage(var: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_settings_env(var, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_deploy_is_clean_for_a_production_environment(tmp_path):
    done = _manage(
        tmp_path / "var",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x7!Qp2#Lm9@Vr4$Tz8%Wn3^Yb6&Kc1*Hd5(Jf0)Gs-Ua+Eo=Ri",
        DJANGO_ALLOWED_HOSTS="example.com",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


_PRINT_SECURITY = (
    "from django.conf import settings as s; import django; django.setup(); "
    "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
)


@pytest.mark.parametrize(
    "env",
    [{}, {"DJANGO_ALLOWED_HOSTS": "example.com", "DJANGO_HTTPS": "0"}],
    ids=["localhost", "switched-off"],
)
def test_plain_http_keeps_working_locally_and_when_switched_off(tmp_path, env):
    done = subprocess.run(
        [sys.executable, "-c", _PRINT_SECURITY],
        cwd=ROOT,
        env=_settings_env(tmp_path / "var", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False", "0"]


# ---------------------------------------------------------------------------------------------------------
# API keys never reach stored error texts

KEY = "sk-test-Zq8Xw3Rt6Yp1Uv4Sn7Mk0Lj2"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_an_endpoint_echoing_the_authorization_header_leaks_no_key(settings):
    settings.OPENAI_API_KEY = ""  # the client's own key is redacted too, not only the configured one
    with OpenAIStub() as stub:
        stub.fail_request(1, "401_echo_auth")
        client = OpenAICompatibleClient(stub.base_url, KEY, timeout=2, max_retries=0)
        with pytest.raises(LLMError) as caught:
            asyncio.run(client.complete(MESSAGES, model="m"))
    text = str(caught.value)
    assert caught.value.kind == "auth" and "Incorrect API key provided" in text
    assert KEY not in text and KEY[8:] not in text, text


@pytest.mark.django_db
def test_a_generation_job_stores_no_key_in_its_errors(settings):
    settings.OPENAI_API_KEY = KEY
    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=["generation"], samples_per_task=1, execute=False
    )
    with OpenAIStub(responder=responder) as stub:
        stub.fail_request(1, "401_echo_auth")
        client = OpenAICompatibleClient(stub.base_url, KEY, timeout=5, max_retries=0)
        job = generation.run_generation(job.pk, client=client)
    failed = job.instances.get()
    assert failed.status == Instance.Status.FAILED and "Incorrect API key" in failed.failure
    stored = [failed.failure, job.error, *LLMCall.objects.filter(job=job).values_list("error", flat=True)]
    assert LLMCall.objects.filter(job=job).exclude(error="").exists()
    assert not any(KEY in text or KEY[8:] in text for text in stored), stored


def test_redaction_covers_authorization_values_and_the_configured_key(settings):
    from curation.llm import redact_secrets

    settings.OPENAI_API_KEY = "configured-secret-value-123"
    text = redact_secrets(
        "Authorization: Bearer abc.def-ghi, api_key=xyz987secret; key configured-secret-value-123; "
        "sk-proj-AAAAbbbbCCCCdddd1234"
    )
    for secret in ("abc.def-ghi", "xyz987secret", "configured-secret-value-123", "AAAAbbbbCCCCdddd1234"):
        assert secret not in text, text
