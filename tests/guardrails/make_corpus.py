"""Write tests/guardrails/corpus.jsonl: planted positives and near-miss negatives per detector.

Every value is generated here (seeded, reproducible): cloud keys and tokens of the right
shape with random bodies, card numbers that pass Luhn for each network, IBANs that pass
mod-97, SSNs in issued ranges; and near misses: order ids that fail Luhn, IBANs that fail
mod-97, UUIDs, hashes, version strings, placeholders. Run: python tests/guardrails/make_corpus.py
Each line: {"detector": ..., "planted": true|false, "text": ...}.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from pathlib import Path

R = random.Random(20261111)
ALNUM = string.ascii_letters + string.digits
PROSE = [
    "Please review the attached report before Friday's meeting.",
    "The build on main failed after the dependency bump; see the log.",
    "Customer asked about the refund status of their last order.",
    "We shipped version 2.14.3 to staging at 10:42 this morning.",
    "def handler(event):\n    return {'status': 200, 'body': event['body']}",
]


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(R.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError


def iban(country: str, length: int, valid: bool = True) -> str:
    bban = "".join(R.choice(string.digits) for _ in range(length - 4))
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    check = 98 - number % 97
    if not valid:
        check = (check % 97) + 1 if check != 97 else 2
    raw = f"{country}{check:02d}{bban}"
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def in_prose(value: str) -> str:
    return f"{R.choice(PROSE)} Here it is: {value} — thanks."


def positives() -> dict[str, list[str]]:
    secrets = []
    for _ in range(20):
        secrets += [
            "AKIA" + rand(16, string.ascii_uppercase + string.digits),
            "ghp_" + rand(36),
            "github_pat_" + rand(22) + "_" + rand(59),
            "xoxb-" + rand(12, string.digits) + "-" + rand(24),
            "sk-proj-" + rand(48, ALNUM + "_-"),
            "sk-ant-api03-" + rand(90, ALNUM + "_-"),
            "AIza" + rand(35, ALNUM + "_-"),
            "sk_live_" + rand(32),
            f'api_key = "{rand(32)}"',
            f"DB_PASSWORD={rand(20)}",
            "-----BEGIN PRIVATE KEY-----\n"
            + rand(64, ALNUM + "+/")
            + "\n-----END PRIVATE KEY-----",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI" + rand(20) + "." + rand(43, ALNUM + "_-"),
        ]
    cards = []
    for _ in range(40):
        for prefix, length in (("4", 16), ("51", 16), ("2221", 16), ("37", 15), ("6011", 16)):
            number = luhn_complete(prefix, length)
            style = R.choice(["plain", "spaced", "dashed"])
            if style == "spaced" and length == 16:
                number = " ".join(number[i : i + 4] for i in range(0, 16, 4))
            elif style == "dashed" and length == 16:
                number = "-".join(number[i : i + 4] for i in range(0, 16, 4))
            cards.append(number)
    ibans = [
        iban(c, n) for _ in range(40) for c, n in (("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18))
    ]
    ibans = [i.replace(i[4:8], "NWBK", 1) if i.startswith("GB") else i for i in ibans]
    ibans = [i for i in ibans if not i.startswith("GB")] + [iban("ES", 24) for _ in range(40)]
    emails = [
        f"{rand(6, string.ascii_lowercase)}.{rand(5, string.ascii_lowercase)}@{rand(7, string.ascii_lowercase)}.example.com"
        for _ in range(100)
    ]
    ssns = [
        f"{R.randint(1, 665):03d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"
        for _ in range(100)
    ]
    ips = [".".join(str(R.randint(1, 254)) for _ in range(4)) for _ in range(100)]
    return {
        "secrets": secrets,
        "credit_card": cards,
        "iban": ibans,
        "email": emails,
        "us_ssn": ssns,
        "ip_address": ips,
        "phone": phones(),
    }


def phones() -> list[str]:
    """North American numbers in the three usual styles and international ones in E.164
    groupings (drawn after the other detectors' values, so theirs stay as they were)."""
    out = []
    for _ in range(20):
        area, exchange, line = R.randint(201, 989), R.randint(200, 999), R.randint(0, 9999)
        out += [
            f"({area}) {exchange}-{line:04d}",
            f"{area}-{exchange}-{line:04d}",
            f"+1 {area} {exchange} {line:04d}",
            f"+44 20 {R.randint(7000, 8999)} {R.randint(0, 9999):04d}",
            f"+49 30 {R.randint(100000, 999999)}",
            f"+33 1 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
        ]
    return out


def phone_near_misses() -> list[str]:
    """Digit groups that are not phone numbers: dates, times, ranges, prices, ids."""
    out = []
    for _ in range(50):
        out += [
            f"released on 20{R.randint(10, 29)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}",
            f"meeting at {R.randint(0, 23):02d}:{R.randint(0, 59):02d} in room {R.randint(100, 999)}",
            f"see pages {R.randint(10, 400)}-{R.randint(401, 900)} of the manual",
            f"total ${R.randint(1, 99)},{R.randint(100, 999)}.{R.randint(0, 99):02d} incl. tax",
            f"ticket #{R.randint(10000, 99999)} closed",
            f"ISBN 978-{R.randint(0, 9)}-{R.randint(10, 99)}-{R.randint(100000, 999999)}-{R.randint(0, 9)}",
        ]
    return out


def negatives() -> list[str]:
    out = []
    for _ in range(100):
        order = luhn_complete("4", 16)
        out += [
            f"Order {order[:-1]}{(int(order[-1]) + 1) % 10} shipped",  # fails Luhn
            f"Tracking id {R.randint(10**12, 10**13 - 1)}",
            f"request {uuid.UUID(int=R.getrandbits(128))}",
            f"commit {rand(40, '0123456789abcdef')}",
            f"sha256 {rand(64, '0123456789abcdef')}",
            f"upgrade to v{R.randint(1, 9)}.{R.randint(0, 30)}.{R.randint(0, 99)}.{R.randint(0, 999)}",
            f"IBAN {iban('DE', 22, valid=False)}",
            'api_key = "YOUR_API_KEY_HERE"',
            f"pip install package=={R.randint(0, 9)}.{R.randint(0, 99)}.{R.randint(0, 99)}",
            f"timestamp {R.randint(1_600_000_000_000, 1_800_000_000_000)}",
            "the token limit is 32000 per request; see docs/limits.md",
            f"ssn-like 000-{R.randint(10, 99)}-{R.randint(1000, 9999)}",
            R.choice(PROSE),
        ]
    return out + phone_near_misses()


def main() -> None:
    path = Path(__file__).with_name("corpus.jsonl")
    with path.open("w", encoding="utf-8") as f:
        for detector, values in positives().items():
            for value in values:
                f.write(
                    json.dumps(
                        {
                            "detector": detector,
                            "planted": True,
                            "value": value,
                            "text": in_prose(value),
                        }
                    )
                    + "\n"
                )
        for text in negatives():
            f.write(json.dumps({"detector": None, "planted": False, "text": text}) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
