"""Loaded with `-p` before pytest-django reads the settings: every test session gets its own folder for
the SQLite test database, the broker and artifacts, and never touches a model hub."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WAVECODER_VAR_DIR", tempfile.mkdtemp(prefix="wavecoder-test-"))
# The test client and the live server speak plain HTTP, whatever DJANGO_ALLOWED_HOSTS says.
os.environ.setdefault("DJANGO_HTTPS", "0")
