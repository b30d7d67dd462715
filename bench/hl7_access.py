"""Routing-path cost: HL7Message(raw) + get("MSH-9.1") + get("PID-3.1"), against python-hl7.

Run: .venv/bin/python bench/hl7_access.py [seconds-per-case]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import hl7  # python-hl7, a dev dependency

from hie.hl7 import HL7Message

# A synthetic ADT^A01 of about 1.3 KB, written for this benchmark.
SEGMENTS = (
    (
        "MSH|^~\\&|ADMIT|GENHOSP|LABSYS|GENLAB|20240311083000||ADT^A01^ADT_A01|CTRL0001|P|2.5.1"
        "|||AL|NE||UNICODE UTF-8"
    ),
    "EVN|A01|20240311083000|||OPER01^DESK^CLERK",
    (
        "PID|1||P1001^^^GENHOSP^MR~SSN-42^^^USA^SS||SMITH^ANNA^MARIE^^MS||19700101|F|||"
        "12 HIGH STREET^^LEEDS^WYK^LS1 1AA^GBR^H||0113 555 7777^PRN^PH|||M|CHR|ACCT9001"
    ),
    "PD1|||GENERAL PRACTICE^^GP01|GP123^JONES^ALAN^^^DR",
    "NK1|1|SMITH^JOHN|SPO^Spouse|12 HIGH STREET^^LEEDS^WYK^LS1 1AA^GBR|0113 555 7777",
    (
        "PV1|1|I|WARD7^12^B^GENHOSP||||CONS01^BROWN^CLAIRE^^^DR|REF01^GREEN^PAUL^^^DR|"
        "|MED||||1|||CONS01^BROWN^CLAIRE^^^DR|IP|VISIT0001|||||||||||||||||||GENHOSP||ADM|||"
        "20240311083000"
    ),
    "PV2|||CHEST PAIN^Chest pain on exertion",
    "OBX|1|NM|8867-4^Heart rate^LN||72|/min|60-100|N|||F|||20240311083500",
    "OBX|2|NM|8480-6^Systolic blood pressure^LN||128|mm[Hg]|90-140|N|||F|||20240311083500",
    "OBX|3|NM|8462-4^Diastolic blood pressure^LN||82|mm[Hg]|60-90|N|||F|||20240311083500",
    "OBX|4|NM|8310-5^Body temperature^LN||37.1|Cel|36.1-37.8|N|||F|||20240311083500",
    "NTE|1||Observations taken at rest after admission to the ward",
    "AL1|1|DA|PENICILLIN^Penicillin|SV|RASH",
    "DG1|1|I10|I20.9^Angina pectoris, unspecified^I10|||A",
    (
        "IN1|1|PLAN01^NHS|INS01|NATIONAL HEALTH SERVICE|PO BOX 1^^LEEDS^^LS1 1AA||||||"
        "||||SMITH^ANNA^MARIE|SEL|19700101|12 HIGH STREET^^LEEDS^WYK^LS1 1AA^GBR"
    ),
    "ZPI|1|VIP|NO-PHOTOS",
)
ADT = "\r".join(SEGMENTS) + "\r"


def ours() -> tuple[str, str]:
    msg = HL7Message(ADT)
    return msg.get("MSH-9.1"), msg.get("PID-3.1")


def python_hl7() -> tuple[str, str]:
    msg = hl7.parse(ADT)
    return str(msg.segment("MSH")[9][0][0]), str(msg.segment("PID")[3][0][0])


def rate(fn: Callable[[], tuple[str, str]], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    assert ours() == python_hl7() == ("ADT", "P1001"), (ours(), python_hl7())
    a, b = rate(ours, seconds), rate(python_hl7, seconds)
    print(f"message: {len(ADT)} characters")
    print(f"HL7Message + 2 gets: {a:12,.0f} /s  ({1e6 / a:6.1f} us each)")
    print(f"python-hl7 parse:    {b:12,.0f} /s  ({1e6 / b:6.1f} us each)")
    print(f"ratio: {a / b:.1f}x")


if __name__ == "__main__":
    main()
