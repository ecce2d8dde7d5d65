"""Schemathesis hooks for tests/schemathesis/run.sh (loaded through
SCHEMATHESIS_HOOKS)."""

import re
import uuid

import schemathesis

# The published pattern of a valid `Idempotency-Key`.
VALID_KEY = re.compile(r'^(?:"[ !#-\[\]-~]{1,255}"|[!#-~][ -~]{0,254})$')


@schemathesis.hook
def before_call(context, case, kwargs):
    """Gives every request its own valid Idempotency-Key, as a client does.

    Generated data reuses short keys (`0`, `a`) for different requests, which
    the API rightly refuses with a 422 (`/problems/idempotency-key-reused`,
    covered by tests/api/idempotency.rs) and Schemathesis would count as a
    valid request rejected. Invalid keys are sent as generated, so their 400
    is still checked. Negative cases are left alone: editing one makes
    Schemathesis revalidate it as positive and send what it meant to leave
    out (a "missing Authorization" case would carry the token).
    """
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    for name, value in list((case.headers or {}).items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_KEY.match(value):
            case.headers[name] = str(uuid.uuid4())
