"""Small real corpora for view, API and worker tests."""

import io
import zipfile
from pathlib import Path

FUNCTIONS = [
    '''def add(a, b):
    """Return the sum of a and b."""
    return a + b
''',
    '''def fizzbuzz(n):
    """Classic FizzBuzz for one number."""
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    return "Buzz" if n % 5 == 0 else str(n)
''',
    '''def mean(values):
    """Arithmetic mean of a non-empty list of numbers."""
    total = sum(values)
    return total / len(values)
''',
    '''def is_palindrome(text):
    """True when text reads the same both ways, ignoring case and spaces."""
    cleaned = "".join(ch.lower() for ch in text if not ch.isspace())
    return cleaned == cleaned[::-1]
''',
    '''def chunks(items, size):
    """Yield successive lists of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
''',
    '''class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        """Put an item on top of the stack."""
        self.items.append(item)

    def pop(self):
        """Remove and return the top item; IndexError when empty."""
        return self.items.pop()
''',
]


def python_module() -> str:
    return "\n\n".join(FUNCTIONS)


def write_package(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mathy.py").write_text(python_module())
    (folder / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge, ...\n")
    return folder


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/mathy.py", python_module())
    return buffer.getvalue()
