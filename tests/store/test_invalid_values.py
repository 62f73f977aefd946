"""A value no store can hold is the request's fault (InvalidValue, INVALID_ARGUMENT),
never a StoreError (UNAVAILABLE, an outage alert). PostgreSQL text cannot hold NUL; the
stores refuse it alike, and the PostgreSQL store stays usable afterwards."""

from __future__ import annotations

import dataclasses

import pytest

from tokend.store import InvalidValue, NewRevocation, StoreError, open_store

from .conformance import NOW, answers, family, token


@pytest.mark.parametrize("fields", [{"value": "a\x00b"}, {"value": "j", "reason": "r\x00"},
                                    {"value": ""}])
def test_a_revocation_refuses_what_no_store_holds(fields: dict[str, str]) -> None:
    with pytest.raises(InvalidValue):
        NewRevocation(kind="jti", expires_at=NOW, **{"reason": "", **fields})


async def test_postgresql_refuses_nul_as_a_value_not_as_an_outage(postgres_database: str
                                                                  ) -> None:
    store = open_store(postgres_database)
    await store.open()
    try:
        nul_claims = dataclasses.replace(family(), claims={"note": "a\x00b"})
        for attempt in (store.create_family(nul_claims, token("t1")),
                        store.revoke_subject("a\x00b", "r", NOW, NOW + 3600)):
            with pytest.raises(InvalidValue) as info:
                await attempt
            assert not isinstance(info.value, StoreError)
        assert await answers(store)
        await store.create_family(family(), token("t1"))  # nothing half-written above
    finally:
        await store.close()
