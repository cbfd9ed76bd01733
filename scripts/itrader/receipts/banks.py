"""The one alias table from bank names printed on receipts (and panel labels) to Gate ``bank.name`` keys.

T-Bank prints a short bank name in ``Банк получателя`` (``ПСБ``, ``МТС-Банк``); Gate identifies the payout's
bank by a lower-case key (``sberbank``).  Matching must go through this table, never through substring
guesses, because a wrong bank is one of the fraud patterns we must catch.
"""

from __future__ import annotations

import re

ALIASES: dict[str, tuple[str, ...]] = {
    "tbank": ("т-банк", "т банк", "тбанк", "тинькофф", "тинькофф банк", "tinkoff", "t-bank", "tbank"),
    "sberbank": ("сбербанк", "сбер", "сбербанк россии", "sberbank", "sber"),
    "alfabank": ("альфа-банк", "альфа банк", "альфабанк", "alfa-bank", "alfabank"),
    "ozonbank": ("озон банк", "ozon банк", "озон", "ozon", "ozon bank", "ozonbank"),
    "yandexbank": ("яндекс банк", "яндекс", "yandex", "yandex bank", "yandexbank"),
    "vtb": ("втб", "банк втб", "vtb"),
    "psb": ("псб", "промсвязьбанк", "psb"),
    "mts": ("мтс-банк", "мтс банк", "мтс", "mts bank", "mts"),
    "raiffeisen": ("райффайзенбанк", "райффайзен", "raiffeisen"),
    "gazprombank": ("газпромбанк", "gazprombank"),
    "rshb": ("россельхозбанк", "рсхб", "rshb"),
    "sovcombank": ("совкомбанк", "sovcombank"),
    "otpbank": ("отп банк", "отп", "otp bank", "otpbank"),
    "pochtabank": ("почта банк", "pochtabank"),
    "rosbank": ("росбанк", "rosbank"),
    "mkb": ("мкб", "московский кредитный банк", "mkb"),
    "homecredit": ("хоум банк", "хоум кредит", "home credit", "homecredit"),
}


def _norm(name: str) -> str:
    text = name.lower().replace("ё", "е")
    text = re.sub(r"[«»\"'()]", " ", text)
    text = re.sub(r"^(пао|ао|ооо|кб|акб)\s+", "", text.strip())
    text = text.replace("-", " ")
    return re.sub(r"\s+", " ", text).strip()


_INDEX = {_norm(alias): key for key, aliases in ALIASES.items() for alias in (*aliases, key)}


def bank_key(name: str | None) -> str | None:
    """The Gate key for a printed bank name or a key itself; None when the name is unknown."""
    if not name:
        return None
    return _INDEX.get(_norm(name))
