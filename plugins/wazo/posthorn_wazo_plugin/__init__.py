"""Runs one delivery of a wazo-webhookd service plugin, as Posthorn's plugin protocol asks.

wazo-webhookd finds its delivery services as entry points of the `wazo_webhookd.services` group,
in one of two forms:

- today's: a class with `load(dependencies)` and a class method `run(task, config, subscription,
  event)` that delivers, returns the request's details (logged with the attempt), and raises
  `HookRetry(detail)` to be retried or `HookExpectedError(detail)` to fail for good (wazo-webhookd's
  own `http` and `mobile` services);
- the older one: `load(dependencies)` registers a Celery task `callback(options, event)`,
  returned by its `callback()` method.

This adapter loads the named entry point, calls `load()` with what wazo-webhookd's own loader
passes (a stand-in for the Celery app, whose `task` decorator keeps the function; the
configuration; the service's name), then delivers once — `run()` with a task (its
`request.retries`), wazo's config (`hook_max_attempts`), the subscription (`uuid`, `config`,
`owner_user_uuid`, …) and `event` = `{"name", "origin_uuid", "data"}`; or the callback with
`options` = the subscription's config and that event — and exits as Posthorn reads it:

- the callback returns: exit 0 (delivered);
- it asks for a retry (`self.retry()` in a bound task, Celery's `Retry`, or wazo-webhookd's
  `HookRetry`): exit 75 (retry later);
- anything else raised: exit 1 (failed for good), with the traceback on stderr, which Posthorn
  keeps in the attempt log.

Usage: `posthorn-wazo-plugin NAME`, the request on stdin (Posthorn does this). With
`--persistent NAME` (for a `[[services]]` entry with `mode = "persistent"`) it loads the service
once, as wazo-webhookd does at its start, and then answers one request per line for as long as it
runs: `{"outcome": "success" | "retry" | "fail", "output": <the returned details>, "error": …}`.
"""

import importlib.metadata
import json
import sys
import traceback
import types

EX_TEMPFAIL = 75


class HookRetry(Exception):
    """wazo-webhookd's "try again later" (wazo_webhookd.services.helpers.HookRetry)."""

    def __init__(self, detail=None):
        self.detail = detail
        super().__init__(detail)


class HookExpectedError(Exception):
    """wazo-webhookd's "failed, and it was expected" (no traceback needed)."""

    def __init__(self, detail=None):
        self.detail = detail
        super().__init__(detail)


class Retry(Exception):
    """What a bound task's `self.retry()` raises here, as Celery's does there."""


def _install_helpers():
    """Plugins may import wazo-webhookd's helpers; without wazo-webhookd installed, these stand in."""
    try:
        import wazo_webhookd.services.helpers  # noqa: F401
        return
    except ImportError:
        pass
    root = sys.modules.setdefault("wazo_webhookd", types.ModuleType("wazo_webhookd"))
    services = sys.modules.setdefault("wazo_webhookd.services", types.ModuleType("wazo_webhookd.services"))
    helpers = types.ModuleType("wazo_webhookd.services.helpers")
    helpers.HookRetry = HookRetry
    helpers.HookExpectedError = HookExpectedError
    sys.modules["wazo_webhookd.services.helpers"] = helpers
    root.services = services
    services.helpers = helpers


class _Task:
    """What a bound task receives as `self`; `request.retries` follows the current attempt."""

    def __init__(self, name, attempt):
        self.name = name
        self.attempt = attempt

    @property
    def request(self):
        attempt = self.attempt() if callable(self.attempt) else self.attempt
        return types.SimpleNamespace(retries=max(attempt - 1, 0), id=None)

    def retry(self, exc=None, countdown=None, **_):
        raise Retry(str(exc) if exc else "retry asked")


class CeleryStandIn:
    """The part of a Celery app a wazo-webhookd plugin uses: `@app.task` keeps the function."""

    def __init__(self, attempt):
        self.tasks = {}
        self.attempt = attempt

    def task(self, *args, **options):
        def register(fn):
            bound = options.get("bind", False)
            task = _Task(options.get("name", fn.__name__), lambda: self.attempt)

            def call(*a, **kw):
                return fn(task, *a, **kw) if bound else fn(*a, **kw)

            call.__name__ = fn.__name__
            call.delay = call
            call.apply_async = lambda args=(), kwargs=None, **_: call(*args, **(kwargs or {}))
            call.run = call
            self.tasks[task.name] = call
            return call

        if len(args) == 1 and callable(args[0]) and not options:
            return register(args[0])
        return register


def _retry_types():
    kinds = [Retry, HookRetry]
    try:
        from celery.exceptions import Retry as CeleryRetry

        kinds.append(CeleryRetry)
    except ImportError:
        pass
    try:
        from wazo_webhookd.services.helpers import HookRetry as WazoHookRetry

        kinds.append(WazoHookRetry)
    except ImportError:
        pass
    return tuple(kinds)


def _expected_types():
    kinds = [HookExpectedError]
    try:
        from wazo_webhookd.services.helpers import HookExpectedError as WazoExpected

        kinds.append(WazoExpected)
    except ImportError:
        pass
    return tuple(kinds)


def _service(name, attempt):
    """The entry point's service, loaded (`load()` called) as wazo-webhookd's loader does."""
    found = [ep for ep in importlib.metadata.entry_points(group="wazo_webhookd.services") if ep.name == name]
    if not found:
        known = sorted(ep.name for ep in importlib.metadata.entry_points(group="wazo_webhookd.services"))
        raise SystemExit(f"no wazo_webhookd.services entry point named {name!r}; installed: {known}")
    service = found[0].load()()
    celery = CeleryStandIn(attempt)
    dependencies = {
        "api": None,
        "bus_consumer": None,
        "celery": celery,
        "config": {},
        "service_manager": None,
        "auth_client": None,
        "service_name": name,
    }
    service.load(dependencies)
    return service, celery


def _callback(name, service, celery):
    if hasattr(service, "callback"):
        return service.callback()
    if len(celery.tasks) == 1:
        return next(iter(celery.tasks.values()))
    raise SystemExit(f"the {name} service has neither run() nor a callback")


def _detail(e):
    """A wazo exception's message for the log: its details' `error` (wazo's services put the
    failure there), its `detail` when that is text, else its text."""
    detail = getattr(e, "detail", None)
    if isinstance(detail, dict) and detail.get("error"):
        return str(detail["error"])
    if isinstance(detail, str) and detail:
        return detail
    return str(e)


def _print_detail(detail):
    """The request's details on stdout, which Posthorn keeps in the attempt log."""
    if detail is not None:
        print(json.dumps(detail, default=str))


def _deliver(name, service, celery, request):
    """One delivery. Returns (outcome, detail, message): outcome "success", "retry", "fail" (an
    expected error) or "error" (anything else raised; its traceback is on stderr)."""
    delivery = request.get("delivery") or {}
    attempt = delivery.get("attempt", 1)
    celery.attempt = attempt
    posted = request.get("event") or {}
    event = {"name": posted.get("name"), "origin_uuid": posted.get("origin"), "data": posted.get("data")}
    config = request.get("config") or {}
    sub = request.get("subscription") or {}
    try:
        if callable(getattr(service, "run", None)):
            task = _Task(name, attempt)
            task.max_retries = delivery.get("max_attempts", 10)
            wazo_config = {"hook_max_attempts": delivery.get("max_attempts", 10)}
            subscription = {"uuid": sub.get("id"), "name": sub.get("name"), "service": name,
                            "config": config, "events": sub.get("events", []),
                            "owner_user_uuid": sub.get("owner_user_uuid"),
                            "owner_tenant_uuid": sub.get("owner"), "metadata": sub.get("metadata", {})}
            return "success", service.run(task, wazo_config, subscription, event), None
        _callback(name, service, celery)(config, event)
        return "success", None, None
    except _retry_types() as e:
        return "retry", getattr(e, "detail", None), _detail(e)
    except _expected_types() as e:
        return "fail", getattr(e, "detail", None), _detail(e)
    except Exception:
        text = traceback.format_exc()
        print(text, file=sys.stderr, end="")
        return "error", None, text.strip().splitlines()[-1]


def _once(name):
    """One delivery, the request on stdin, the verdict the exit status."""
    request = json.load(sys.stdin)
    attempt = (request.get("delivery") or {}).get("attempt", 1)
    service, celery = _service(name, attempt)
    outcome, detail, message = _deliver(name, service, celery, request)
    _print_detail(detail)
    if outcome == "retry":
        print(f"retry: {message}", file=sys.stderr)
        sys.exit(EX_TEMPFAIL)
    if outcome == "fail":
        print(f"failed: {message}", file=sys.stderr)
    if outcome in ("fail", "error"):
        sys.exit(1)
    sys.exit(0)


def _persistent(name):
    """Posthorn's persistent mode: `load()` once, then one request per line of stdin and one
    answer per line of stdout. What the plugin itself prints goes to stderr (the attempt's log),
    so that it cannot break the answers."""
    answers = sys.stdout
    sys.stdout = sys.stderr
    service, celery = _service(name, 1)
    for line in sys.stdin:
        if not line.strip():
            continue
        outcome, detail, message = _deliver(name, service, celery, json.loads(line))
        answer = {"outcome": "fail" if outcome == "error" else outcome}
        if detail is not None:
            answer["output"] = json.loads(json.dumps(detail, default=str))
        if message:
            answer["error"] = message
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main():
    args = sys.argv[1:]
    persistent = "--persistent" in args
    args = [a for a in args if a != "--persistent"]
    if len(args) != 1:
        raise SystemExit("usage: posthorn-wazo-plugin [--persistent] NAME (requests on stdin)")
    _install_helpers()
    if persistent:
        _persistent(args[0])
    else:
        _once(args[0])


if __name__ == "__main__":
    main()
