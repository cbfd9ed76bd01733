"""Secrets at rest: AES-GCM round trip, wrong key, swapped/tampered tokens, and no plaintext in dumps."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from orchestrator.models import Base, BybitAccount, GateAccount
from orchestrator.secrets import SecretBox, SecretsError, generate_key, parse_key

PASSWORD = "Gate-Passw0rd-Уникальный"
API_SECRET = "BybitSecretValue0123456789abcdef"
COOKIES = {"sid": "eyJpdiI6ImNvb2tpZS1zaWQtdmFsdWUi", "rsid": "rsid-cookie-value-42"}


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.from_env(generate_key())


def test_round_trip_and_fresh_nonce(box: SecretBox) -> None:
    a = box.seal(PASSWORD, "gate_accounts", "password_enc", 1)
    b = box.seal(PASSWORD, "gate_accounts", "password_enc", 1)
    assert a != b, "a random nonce per value"
    assert a.startswith(f"v1.{box.key_id}.")
    assert PASSWORD not in a and box.open(a, "gate_accounts", "password_enc", 1) == PASSWORD


def test_wrong_key_is_named_not_leaked(box: SecretBox) -> None:
    token = box.seal(API_SECRET, "bybit_accounts", "api_secret_enc", 3)
    key = generate_key()
    other = SecretBox.from_env(key)
    with pytest.raises(SecretsError, match="wrong or rotated key") as exc:
        other.open(token, "bybit_accounts", "api_secret_enc", 3)
    assert key not in str(exc.value) and API_SECRET not in str(exc.value)


def test_ciphertext_cannot_move_between_rows_or_columns(box: SecretBox) -> None:
    token = box.seal(PASSWORD, "gate_accounts", "password_enc", 1)
    for where in [("gate_accounts", "password_enc", 2), ("gate_accounts", "cookies_enc", 1),
                  ("bybit_accounts", "api_secret_enc", 1)]:
        with pytest.raises(SecretsError, match="failed authentication"):
            box.open(token, *where)


def test_tampered_and_malformed_tokens(box: SecretBox) -> None:
    token = box.seal(PASSWORD, "gate_accounts", "password_enc", 1)
    head, body = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    flipped = head + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(SecretsError, match="failed authentication"):
        box.open(flipped, "gate_accounts", "password_enc", 1)
    for bad in ["", "plaintext", "v2." + token[3:], head + ".AAAA", head + ".!!!"]:
        with pytest.raises(SecretsError):
            box.open(bad, "gate_accounts", "password_enc", 1)


@pytest.mark.parametrize("value", [None, "", "  ", "not base64 at all!", base64.b64encode(b"short").decode()])
def test_bad_or_missing_key_is_a_clear_error(value: str | None) -> None:
    with pytest.raises(SecretsError, match="ITRADER_ENCRYPTION_KEY"):
        parse_key(value)


def test_key_accepts_standard_and_urlsafe_base64() -> None:
    raw = bytes(range(250, 256)) + bytes(26)
    assert parse_key(base64.b64encode(raw).decode()) == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw


def test_models_store_only_ciphertext(session: Session, box: SecretBox) -> None:
    gate = GateAccount(login="dump@example.test")
    bybit = BybitAccount(name="dump", api_key="PUBLICKEY123")
    session.add_all([gate, bybit])
    with pytest.raises(ValueError, match="flush"):
        gate.set_password(box, PASSWORD)  # no id yet: the token must be bound to the row
    session.flush()
    gate.set_password(box, PASSWORD)
    gate.set_cookies(box, COOKIES)
    bybit.set_api_secret(box, API_SECRET)
    session.commit()
    session.expunge_all()
    g, b = session.get(GateAccount, gate.id), session.get(BybitAccount, bybit.id)
    assert g.password(box) == PASSWORD and g.cookies(box) == COOKIES and b.api_secret(box) == API_SECRET

    # The whole database as text contains none of the secrets.
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        dump = "\n".join(conn.connection.dbapi_connection.iterdump())
    else:
        rows = []
        for table in Base.metadata.sorted_tables:
            rows += [repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {table.name}"))]
        dump = "\n".join(rows)
    assert "dump@example.test" in dump  # the dump really covers the accounts
    for secret in (PASSWORD, API_SECRET, *COOKIES.values()):
        assert secret not in dump

    # Swap the ciphertexts of two rows in the database: decryption refuses instead of mixing accounts up.
    other = GateAccount(login="other@example.test")
    session.add(other)
    session.flush()
    other.set_password(box, "another-password")
    g.password_enc, other.password_enc = other.password_enc, g.password_enc
    with pytest.raises(SecretsError):
        g.password(box)
