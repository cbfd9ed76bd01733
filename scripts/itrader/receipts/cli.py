"""``./test.sh receipt-parse FILE [--amount A --wallet W --bank B --not-before ISO] [--ocr]``.

Prints what ``ocr_receipt`` sees in one file (source, fields, checks, verdict) as indented JSON, for
looking at a real receipt by hand without writing a request.
"""

from __future__ import annotations

import argparse
import json
import sys

from itrader.contract import json_default
from itrader.errors import ScriptError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="receipt-parse", description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--amount")
    parser.add_argument("--wallet")
    parser.add_argument("--bank")
    parser.add_argument("--not-before")
    parser.add_argument("--ocr", action="store_true", help="ignore a PDF text layer and OCR it")
    parser.add_argument("--text", action="store_true", help="also print the extracted text")
    args = parser.parse_args(argv)
    from itrader.receipts.ops import analyse

    expected = {k: v for k, v in {"amount": args.amount, "wallet": args.wallet, "bank": args.bank,
                                  "not_before": args.not_before}.items() if v}
    try:
        with open(args.file, "rb") as fh:
            data = fh.read()
        out = analyse(data, expected=expected or None, force_ocr=args.ocr)
        if args.text:
            from itrader.receipts.extract import extract

            out["text"] = extract(data, force_ocr=args.ocr).text
    except OSError as exc:
        print(json.dumps({"error": f"cannot read {args.file}: {exc.strerror}"}, ensure_ascii=False), file=sys.stderr)
        return 2
    except ScriptError as err:
        print(json.dumps(err.to_dict(), ensure_ascii=False), file=sys.stderr)
        return err.exit_code
    print(json.dumps(out, ensure_ascii=False, indent=2, default=json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
