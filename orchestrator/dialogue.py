"""The buyer chat as a deterministic dialogue state machine.

The dialogue is driven by a persisted step (``orders.chat_step``), never by re-reading what we wrote: a restart
resumes at the stored step and the intent rows make every send happen once.  Replies are classified by
whole-token rules in Russian and English (substring matching is how an earlier system read "мне" as "не").
An optional fallback classifier (an LLM) may be consulted for replies the rules call unclear; it only ever
labels text, it never sees secrets and never takes part in a release decision.

Message texts are data (``TEMPLATES``) rendered with ``str.format``; the requisites carry the wallet, the
bank label, the exact amount with "₽" and the receipt address on separate lines, which is also what the
sandbox's simulated buyers read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Label = Literal["yes", "no", "unclear"]

# -- classification -----------------------------------------------------------------------------------------

YES_WORDS = frozenset({
    "да", "даа", "ага", "угу", "конечно", "согласен", "согласна", "готов", "готова", "хорошо", "ок", "окей",
    "yes", "yep", "yeah", "sure", "ok", "okay", "agree", "+",
})
NO_WORDS = frozenset({"нет", "неа", "no", "nope", "отказываюсь", "отмена", "cancel"})
# "не" is a no only when it negates what we asked about; as a token ("не буду") never as a substring ("мне").
NEGATED = frozenset({"буду", "могу", "смогу", "согласен", "согласна", "хочу", "получится", "из", "готов",
                     "готова", "сбер", "тинькофф"})
NEGATORS_EN = {("not", "from"), ("can't",), ("cannot",), ("won't",), ("don't",)}

_TOKEN = re.compile(r"[a-zа-я0-9']+|\+", re.IGNORECASE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("ё", "е"))


def classify_rules(text: str) -> Label:
    """yes / no / unclear from whole tokens; both signals at once is unclear (ask again)."""
    toks = tokens(text)
    no = any(t in NO_WORDS for t in toks)
    no = no or any(a == "не" and b in NEGATED for a, b in zip(toks, toks[1:], strict=False))
    no = no or any(tuple(toks[i:i + len(p)]) == p for p in NEGATORS_EN for i in range(len(toks)))
    yes = any(t in YES_WORDS for t in toks)
    if yes and not no:
        return "yes"
    if no and not yes:
        return "no"
    return "unclear"


Classifier = Callable[[str], Label]


def classify(text: str, fallback: Classifier | None = None) -> Label:
    """Rules first; the fallback (an LLM seam) only refines an unclear answer, and errors keep it unclear."""
    label = classify_rules(text)
    if label != "unclear" or fallback is None:
        return label
    try:
        refined = fallback(text)
    except Exception:  # the LLM is an aid, never a dependency
        return "unclear"
    return refined if refined in ("yes", "no", "unclear") else "unclear"


# -- message templates (data) ---------------------------------------------------------------------------------

TEMPLATES: dict[str, str] = {
    "question": (
        "Здравствуйте! Спасибо за заказ. Перед оплатой два вопроса:\n"
        "1) Вы оплатите со счёта в Т-Банке?\n"
        "2) Сможете переслать PDF-квитанцию из официального письма Т-Банка на нашу почту?\n"
        "Ответьте, пожалуйста, «да» или «нет»."
    ),
    "repeat_prefix": "Мы работаем по фиксированной процедуре, поэтому уточняю ещё раз.",
    "requisites_wallet": "Реквизиты для оплаты: {bank_label}, {wallet_kind} {wallet}",
    "requisites_amount": "Сумма к переводу строго: {amount} ₽ (одним платежом, без округления)",
    "requisites_email": "Квитанцию (PDF из письма Т-Банка) перешлите на почту: {receipt_email}",
    "requisites_warning": (
        "Важно: не спрашивайте ФИО получателя — реквизиты верные. Платите только в указанный банк. "
        "После оплаты перешлите PDF из официального письма банка на почту выше и нажмите «Оплачено»."
    ),
    "refused": "Понял, спасибо. Без оплаты из Т-Банка сделку провести не сможем, отменяю заказ.",
    "confirmed": (
        "Квитанция получена и проверена: {amount} ₽, операция {operation_ref}. "
        "USDT будут отпущены в течение пары минут."
    ),
}


def money_text(amount: Decimal) -> str:
    """Amounts as a Russian bank writes them: groups of three, comma before kopecks ("15 000", "2 500,50")."""
    quantized = amount.quantize(Decimal("0.01"))
    whole, _, frac = f"{quantized:f}".partition(".")
    grouped = f"{int(whole):,}".replace(",", " ")
    return grouped if frac == "00" else f"{grouped},{frac}"


def render(key: str, **values: object) -> str:
    return TEMPLATES[key].format(**values)


def question(repeat: bool = False) -> str:
    text = render("question")
    return f"{render('repeat_prefix')}\n{text}" if repeat else text


def requisites(*, wallet: str, bank_label: str, amount: Decimal, receipt_email: str) -> list[str]:
    """The four requisites messages, each sent separately (and each its own intent row)."""
    kind = "телефон (СБП)" if len(wallet) == 11 and wallet.startswith("7") else "карта"
    return [
        render("requisites_wallet", bank_label=bank_label, wallet_kind=kind, wallet=wallet),
        render("requisites_amount", amount=money_text(amount)),
        render("requisites_email", receipt_email=receipt_email),
        render("requisites_warning"),
    ]


# -- the dialogue machine (data) ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """What to do when a reply with ``label`` arrives at ``state``."""

    send: tuple[str, ...]  # message kinds: "question", "question_repeat", "requisites", "refused"
    next_state: str
    outcome: Literal["continue", "paying", "refused"] = "continue"


START = "ask"  # after the opening question is sent
DIALOGUE: dict[tuple[str, Label], Step] = {
    ("ask", "yes"): Step(send=("requisites",), next_state="await_payment", outcome="paying"),
    ("ask", "no"): Step(send=("refused",), next_state="closed", outcome="refused"),
    ("ask", "unclear"): Step(send=("question_repeat",), next_state="ask_again"),
    ("ask_again", "yes"): Step(send=("requisites",), next_state="await_payment", outcome="paying"),
    ("ask_again", "no"): Step(send=("refused",), next_state="closed", outcome="refused"),
    ("ask_again", "unclear"): Step(send=("question_repeat",), next_state="ask_again_2"),
    ("ask_again_2", "yes"): Step(send=("requisites",), next_state="await_payment", outcome="paying"),
    ("ask_again_2", "no"): Step(send=("refused",), next_state="closed", outcome="refused"),
    # Three unclear answers in a row: treat as a refusal rather than loop forever.
    ("ask_again_2", "unclear"): Step(send=("refused",), next_state="closed", outcome="refused"),
}
WAITING_FOR_ANSWER = frozenset(state for state, _ in DIALOGUE)


def next_step(state: str, label: Label) -> Step | None:
    """The step for a buyer reply; None when the dialogue does not expect a reply in this state."""
    return DIALOGUE.get((state, label))
