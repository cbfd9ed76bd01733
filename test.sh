#!/usr/bin/env bash
# itrader test entry point.
#   ./test.sh                 setup + every test (what CI runs)
#   ./test.sh setup           create .venv and install everything (idempotent, quiet when nothing to do)
#   ./test.sh <target> [...]  one slice; `./test.sh list` shows them
#   ./test.sh --live <target> read-only targets against the real venues with test_data/*.live.json
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
export OMP_THREAD_LIMIT=1 PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-}

APT_PACKAGES="tesseract-ocr tesseract-ocr-rus fonts-dejavu-core poppler-utils dovecot-imapd postgresql"

say() { printf '%s\n' "$*" >&2; }

setup() {
    local missing=()
    for pkg in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" = 0 ]; then
            say "setup: installing system packages: ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        else
            say "setup: missing system packages (run as root or install them): ${missing[*]}"
            exit 2
        fi
    fi
    if [ ! -x "$PY" ]; then
        say "setup: creating .venv"
        python3 -m venv "$VENV"
        "$PY" -m pip install -q --upgrade pip >/dev/null
    fi
    local stamp="$VENV/.itrader-installed" want
    want=$(sha256sum pyproject.toml | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "setup: installing python packages"
        "$PY" -m pip install -q -e ".[test]" 2>&1 | grep -vE "^(WARNING|  )|^$" >&2 || true
        "$PY" -c "import itrader, orchestrator, sandbox, pybit, fastapi" || { say "setup: install failed"; exit 1; }
        echo "$want" >"$stamp"
    fi
    mkdir -p var
}

pytest_run() { "$PY" -m pytest "$@"; }

LIVE=0
if [ "${1:-}" = "--live" ]; then
    LIVE=1
    shift
fi

live_check() {
    local f
    for f in test_data/bybit_credentials.live.json; do
        [ -f "$f" ] || { say "--live needs $f (real read-only credentials, git-ignored); see README"; exit 2; }
    done
    if ! "$PY" - <<'EOF'
import socket, sys
try:
    socket.create_connection(("api.bybit.com", 443), timeout=3).close()
except OSError as exc:
    sys.exit(f"--live: api.bybit.com is unreachable from this machine ({exc.__class__.__name__}); no live run possible")
EOF
    then exit 1; fi
    export ITRADER_LIVE=1
}

run_target() {
    local target=$1
    shift
    case "$target" in
    setup) ;;
    list) sed -n 's/^    \([a-z0-9-]*\))  *#\(.*\)/\1\t\2/p' "$0" ;;
    unit)  # contract, schemas, pricing rules, state machine, lint
        "$PY" -m ruff check --quiet scripts sandbox orchestrator migrations tests
        pytest_run tests/unit "$@" ;;
    bybit-simple)  # every Bybit script answers its schema against the sandbox
        pytest_run tests/bybit/test_simple.py "$@" ;;
    bybit-python-rates)  # bybit_get_rates: market list, tiered price, failures
        pytest_run tests/bybit/test_rates.py "$@" ;;
    bybit-python-create-ad)  # bybit_create_ad validation and venue answers
        pytest_run tests/bybit/test_create_ad.py "$@" ;;
    bybit-python-delete-ad)  # bybit_cancel_ad
        pytest_run tests/bybit/test_delete_ad.py "$@" ;;
    bybit-python-account)  # account info, payment methods
        pytest_run tests/bybit/test_account.py "$@" ;;
    bybit-python-orders)  # orders, chat, release
        pytest_run tests/bybit/test_orders.py "$@" ;;
    bybit)  # every Bybit test incl. the error matrix, fuzzing and sandbox conformance
        pytest_run tests/bybit "$@" ;;
    gate-auth)  # session lifecycle: login, expiry, re-login
        pytest_run tests/gate/test_auth.py "$@" ;;
    gate-login)  # gate_login
        pytest_run tests/gate/test_login.py "$@" ;;
    gate-set-balance)  # gate_set_balance, gate_me
        pytest_run tests/gate/test_set_balance.py "$@" ;;
    gate-list-pending)  # gate_list_payouts, gate_get_payout
        pytest_run tests/gate/test_list_pending.py "$@" ;;
    gate-accept)  # gate_accept
        pytest_run tests/gate/test_accept.py "$@" ;;
    gate-approve)  # gate_approve
        pytest_run tests/gate/test_approve.py "$@" ;;
    gate-cancel)  # gate_cancel
        pytest_run tests/gate/test_cancel.py "$@" ;;
    gate)  # every Gate test
        pytest_run tests/gate "$@" ;;
    receipt-parse)  # print the parsed fields of one receipt file: ./test.sh receipt-parse FILE
        [ $# -ge 1 ] || { say "usage: ./test.sh receipt-parse FILE"; exit 2; }
        "$PY" -m itrader.receipts.cli "$@" ;;
    email-fetch)  # email_fetch_receipts against a real dovecot
        pytest_run tests/receipts/test_email_fetch.py "$@" ;;
    receipts)  # the receipt corpus, OCR, fraud variants, email
        pytest_run tests/receipts "$@" ;;
    orchestrator)  # database, state machine, runner
        pytest_run tests/orchestrator "$@" ;;
    e2e)  # the whole pipeline in the sandbox on SQLite and PostgreSQL; an operator's review decision
        pytest_run tests/e2e/test_e2e.py tests/e2e/test_operator.py "$@" ;;
    crash)  # kill -9 the orchestrator at random moments
        pytest_run tests/e2e/test_crash.py "$@" ;;
    faults)  # venue faults injected during a run
        pytest_run tests/e2e/test_faults.py "$@" ;;
    supervisor)  # supervisor/sandbox.conf under a real supervisord: up, payouts, stop/restart, shutdown
        pytest_run tests/e2e/test_supervisor.py "$@" ;;
    bench)  # benchmark table (not a test)
        "$PY" -m tests.bench "$@" ;;
    all)  # every test
        "$PY" -m ruff check --quiet scripts sandbox orchestrator migrations tests
        pytest_run tests "$@" ;;
    *) say "unknown target '$target'; ./test.sh list"; exit 2 ;;
    esac
}

setup
[ $LIVE = 1 ] && live_check
if [ $# -eq 0 ]; then
    run_target all
else
    run_target "$@"
fi
