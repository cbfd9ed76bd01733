"""Reply classification is whole-token, and the dialogue is data with no dead ends."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator import dialogue


@pytest.mark.parametrize("text,label", [
    ("да", "yes"), ("Да, из Т-Банка", "yes"), ("ДА!", "yes"), ("yes", "yes"), ("ok", "yes"), ("+", "yes"),
    ("конечно, пришлю квитанцию", "yes"), ("Sure", "yes"),
    ("нет", "no"), ("Нет, я из Сбера", "no"), ("no, sorry", "no"), ("не буду", "no"), ("не могу", "no"),
    ("I can't", "no"), ("не из т-банка", "no"),
    ("а что за банк?", "unclear"), ("мне нужно подумать", "unclear"), ("", "unclear"), ("ну", "unclear"),
    ("да нет наверное", "unclear"),  # both signals: ask again
    ("окно", "unclear"), ("данные", "unclear"), ("нетто", "unclear"),  # substrings of yes/no words are not answers
])
def test_classify_rules_whole_tokens(text, label):
    assert dialogue.classify_rules(text) == label


def test_fallback_only_refines_unclear_and_failures_stay_unclear():
    assert dialogue.classify("да", fallback=lambda t: "no") == "yes"
    assert dialogue.classify("хм", fallback=lambda t: "yes") == "yes"
    assert dialogue.classify("хм", fallback=lambda t: "maybe") == "unclear"

    def broken(_):
        raise TimeoutError

    assert dialogue.classify("хм", fallback=broken) == "unclear"


def test_every_waiting_state_handles_every_label_and_reaches_an_end():
    for state in dialogue.WAITING_FOR_ANSWER | {dialogue.START}:
        for label in ("yes", "no", "unclear"):
            assert dialogue.next_step(state, label) is not None, (state, label)
    # Unclear forever must terminate.
    state, seen = dialogue.START, 0
    while state in dialogue.WAITING_FOR_ANSWER:
        state = dialogue.next_step(state, "unclear").next_state
        seen += 1
        assert seen < 10
    assert state == "closed"


def test_requisites_carry_wallet_bank_exact_amount_and_address():
    msgs = dialogue.requisites(wallet="79001234567", bank_label="Сбербанк", amount=Decimal("15000.50"),
                               receipt_email="receipts@example.test")
    assert len(msgs) == 4
    assert "79001234567" in msgs[0] and "Сбербанк" in msgs[0]
    assert "15 000,50 ₽" in msgs[1]
    assert "receipts@example.test" in msgs[2]
    assert "?" in dialogue.question() and dialogue.question(repeat=True).startswith(dialogue.render("repeat_prefix"))


@pytest.mark.parametrize("amount,text", [("1000", "1 000"), ("300000.00", "300 000"), ("2500.5", "2 500,50"),
                                         ("999.99", "999,99")])
def test_money_text(amount, text):
    assert dialogue.money_text(Decimal(amount)) == text
