"""Runs one delivery of a wazo-webhookd service plugin, as Posthorn's plugin protocol asks.

wazo-webhookd finds its delivery services as entry points of the `wazo_webhookd.services` group:
a class whose `load(dependencies)` registers a Celery task `callback(options, event)`, returned by
its `callback()` method. This adapter loads the named entry point, calls `load()` with what
wazo-webhookd's own loader passes (a stand-in for the Celery app, whose `task` decorator keeps
the function; the configuration; the service's name), then runs the callback once with
`options` = the subscription's config and `event` = `{"name", "origin_uuid", "data"}`, and exits
as Posthorn reads it:

- the callback returns: exit 0 (delivered);
- it asks for a retry (`self.retry()` in a bound task, Celery's `Retry`, or wazo-webhookd's
  `HookRetry`): exit 75 (retry later);
- anything else raised: exit 1 (failed for good), with the traceback on stderr, which Posthorn
  keeps in the attempt log.

Usage: `posthorn-wazo-plugin NAME`, the request on stdin (Posthorn does this).
"""

import importlib.metadata
import json
import sys
import traceback
import types

EX_TEMPFAIL = 75


class HookRetry(Exception):
    """wazo-webhookd's "try again later" (wazo_webhookd.services.helpers.HookRetry)."""


class HookExpectedError(Exception):
    """wazo-webhookd's "failed, and it was expected" (no traceback needed)."""


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
    """What a bound task receives as `self`."""

    def __init__(self, name, attempt):
        self.name = name
        self.request = types.SimpleNamespace(retries=max(attempt - 1, 0), id=None)

    def retry(self, exc=None, countdown=None, **_):
        raise Retry(str(exc) if exc else "retry asked")


class CeleryStandIn:
    """The part of a Celery app a wazo-webhookd plugin uses: `@app.task` keeps the function."""

    def __init__(self, attempt):
        self.tasks = {}
        self._attempt = attempt

    def task(self, *args, **options):
        def register(fn):
            bound = options.get("bind", False)
            task = _Task(options.get("name", fn.__name__), self._attempt)

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


def _load(name, attempt):
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
    if hasattr(service, "callback"):
        return service.callback()
    if len(celery.tasks) == 1:
        return next(iter(celery.tasks.values()))
    raise SystemExit(f"the {name} service registered no callback")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: posthorn-wazo-plugin NAME (the request on stdin)")
    _install_helpers()
    request = json.load(sys.stdin)
    attempt = request.get("delivery", {}).get("attempt", 1)
    callback = _load(sys.argv[1], attempt)
    posted = request.get("event") or {}
    event = {"name": posted.get("name"), "origin_uuid": posted.get("origin"), "data": posted.get("data")}
    try:
        callback(request.get("config") or {}, event)
    except _retry_types() as e:
        print(f"retry: {e}", file=sys.stderr)
        sys.exit(EX_TEMPFAIL)
    except HookExpectedError as e:
        print(f"failed: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
