"""The execution step of a HumanEval-style check, run inside the sandbox (standard library only).

Two processes, so that the completion cannot forge its result:

- the **harness** (this process, trusted code): runs the benchmark's prompt helpers and its `test`,
  calls `check(candidate)` and alone writes the outcome to the sandbox's standard output;
- the **candidate** (a fork, with the audit hook installed, its standard output pointed at /dev/null):
  runs the program (prompt + completion, or a whole solution) and answers each call of the entry point.

Arguments and return values cross a pipe as plain data (None, bools, numbers, strings, bytes, lists,
tuples, sets, dicts; anything else is an error), so an object that claims to equal everything, a
patched `assert`, a forged "passed" line or an early `os._exit(0)` cannot make a test pass: the
candidate never holds the channel the outcome is written to, and the sandbox gives it no way to reach
the harness's memory or descriptors (no /proc, ptrace and pidfd calls refused, the harness not dumpable).

Run as `python -I -S -u runner.py` in a folder holding `program.py` and `problem.json`
(`prompt`, `test`, `entry_point`, `timeout_s`). Prints one line: `RESULT <json status>`.
"""

import builtins
import json
import os
import signal
import sys
import traceback

MAX_MESSAGE = 16 * 1024 * 1024
GUARD_FOLDER = "/sandbox"


class _Timeout(Exception):
    pass


class CandidateError(Exception):
    """The candidate raised something that is not a built-in exception, or broke the protocol."""


class _Sink:
    # Like the harness's WriteOnlyStringIO: writes vanish, reads fail.
    def write(self, text):
        return len(text)

    def writelines(self, lines):
        pass

    def flush(self):
        pass

    def readable(self):
        return False

    def writable(self):
        return True

    def isatty(self):
        return False

    def read(self, *args):
        raise OSError("stdin is not readable")

    readline = readlines = read


# --- plain data across the pipe ---------------------------------------------------------------------


def encode(value, depth=0):
    """A JSON-ready form of plain data; raises TypeError for anything else."""
    if depth > 100:
        raise TypeError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"$x": repr(value)}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"$t": [encode(v, depth + 1) for v in value]}
    if isinstance(value, frozenset):
        return {"$f": [encode(v, depth + 1) for v in value]}
    if isinstance(value, set):
        return {"$s": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"$d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, bytes):
        return {"$b": value.decode("latin-1")}
    if isinstance(value, complex):
        return {"$c": [repr(value.real), repr(value.imag)]}
    raise TypeError(f"unsupported value of type {type(value).__name__}")


def decode(data):
    """The value `encode` described; only plain data comes out."""
    if data is None or isinstance(data, (bool, str, int)) and not isinstance(data, float):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict) and len(data) == 1:
        ((tag, body),) = data.items()
        if tag == "$x" and isinstance(body, str):
            return float(body)
        if tag == "$t" and isinstance(body, list):
            return tuple(decode(v) for v in body)
        if tag == "$f" and isinstance(body, list):
            return frozenset(decode(v) for v in body)
        if tag == "$s" and isinstance(body, list):
            return {decode(v) for v in body}
        if tag == "$d" and isinstance(body, list):
            return {decode(k): decode(v) for k, v in body}
        if tag == "$b" and isinstance(body, str):
            return body.encode("latin-1")
        if tag == "$c" and isinstance(body, list) and len(body) == 2:
            return complex(float(body[0]), float(body[1]))
    raise CandidateError("malformed value from the candidate")


def _send(fd, message):
    data = json.dumps(message).encode()
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[os.write(fd, data) :]


def _receive(fd):
    head = _read_exactly(fd, 8)
    size = int.from_bytes(head, "big")
    if size > MAX_MESSAGE:
        raise CandidateError("message from the candidate too large")
    return json.loads(_read_exactly(fd, size))


def _read_exactly(fd, size):
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise CandidateError("the candidate process ended")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the candidate's side ----------------------------------------------------------------------------


def _candidate(requests, answers, entry_point):
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # the outcome channel is the harness's alone
    sys.path.insert(0, GUARD_FOLDER)
    import guard

    guard.install(os.getcwd(), ("/proc", "/etc/shadow"))
    sys.stdout = sys.stderr = sys.stdin = _Sink()
    try:
        with open("program.py", encoding="utf-8") as f:
            source = f.read()
        namespace = {}
        # A fresh namespace, as `exec(check_program, {})` in the harness: `__name__` is not "__main__".
        exec(compile(source, "program.py", "exec"), namespace)
        function = namespace[entry_point]
        _send(answers, {"ready": True})
    except BaseException as exc:
        _send(answers, {"raise": [type(exc).__name__, _describe(exc)]})
        os._exit(0)
    while True:
        try:
            request = _receive(requests)
        except BaseException:
            os._exit(0)
        try:
            result = function(*decode(request["args"]), **decode(request["kwargs"]))
            _send(answers, {"ok": encode(result)})
        except BaseException as exc:
            _send(answers, {"raise": [type(exc).__name__, _describe(exc)]})


def _describe(exc):
    described = getattr(exc, "described", None)  # an exception rebuilt from the candidate's answer
    if isinstance(described, str):
        return described
    return (traceback.format_exception_only(type(exc), exc)[-1].strip() or type(exc).__name__)[:300]


# --- the harness's side ------------------------------------------------------------------------------


def _rebuilt(name, described):
    """The candidate's exception as one the tests can catch: the built-in class of that name if any."""
    kind = getattr(builtins, name, None)
    message = described.split(": ", 1)[1] if described.startswith(name + ": ") else described
    exc = None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            exc = kind(message)
        except Exception:
            exc = None
    if exc is None:
        exc = CandidateError(message)
    exc.described = described[:300]
    return exc


def _helpers(prompt):
    """The prompt compiled for its helpers (imports, functions the tests use); a bodiless stub gets `pass`."""
    for source in (prompt, prompt + "\n    pass\n"):
        try:
            return compile(source, "prompt.py", "exec")
        except SyntaxError:
            continue
    return compile("", "prompt.py", "exec")


def _alarm(signum, frame):
    raise _Timeout()


def main():
    with open("problem.json", encoding="utf-8") as f:
        problem = json.load(f)
    os.remove("problem.json")  # the tests stay out of the candidate's reach
    out = os.dup(1)
    requests_read, requests_write = os.pipe()
    answers_read, answers_write = os.pipe()
    _not_dumpable()
    pid = os.fork()
    if pid == 0:
        os.close(out)
        os.close(requests_write)
        os.close(answers_read)
        _candidate(requests_read, answers_write, problem["entry_point"])
        os._exit(0)
    os.close(requests_read)
    os.close(answers_write)
    sys.stdout = sys.stdin = _Sink()

    def candidate(*args, **kwargs):
        _send(requests_write, {"args": encode(list(args)), "kwargs": encode(dict(kwargs))})
        answer = _receive(answers_read)
        if isinstance(answer, dict) and "ok" in answer:
            return decode(answer["ok"])
        if isinstance(answer, dict) and isinstance(answer.get("raise"), list) and len(answer["raise"]) == 2:
            raise _rebuilt(str(answer["raise"][0]), str(answer["raise"][1]))
        raise CandidateError("malformed answer from the candidate")

    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(problem["timeout_s"]))
    try:
        ready = _receive(answers_read)
        if not (isinstance(ready, dict) and ready.get("ready") is True):
            loaded = ready.get("raise") if isinstance(ready, dict) else None
            name, message = (
                loaded if isinstance(loaded, list) and len(loaded) == 2 else ("Error", "no answer")
            )
            raise _rebuilt(str(name), str(message))
        namespace = {}
        exec(_helpers(problem["prompt"]), namespace)
        namespace[problem["entry_point"]] = candidate
        exec(compile(problem["test"], "test.py", "exec"), namespace)
        namespace["check"](candidate)
        signal.setitimer(signal.ITIMER_REAL, 0)
        status = "passed"
    except _Timeout:
        status = "timed out"
    except BaseException as exc:  # SystemExit and KeyboardInterrupt fail too, as in the harness
        signal.setitimer(signal.ITIMER_REAL, 0)
        status = ("failed" if isinstance(exc, AssertionError) else "error") + ": " + _describe(exc)
        traceback.print_exc(file=sys.stderr)
    signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    os.write(out, ("RESULT " + json.dumps(status) + "\n").encode())
    os._exit(0)  # do not wait for threads the program left running


def _not_dumpable():
    # Belt and braces beside the sandbox's missing /proc: the candidate may not inspect this process.
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass


if __name__ == "__main__":
    main()
