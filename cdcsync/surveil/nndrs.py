"""Cases the NNDRS (大疫情网) already holds a card for: closed as 已报卡 after ``cdcsync nndrs import``.

An imported card (``recon.nndrs_card``) covers an open case when it is the same patient and
disease. It is the same patient when the card number is one of the patient's HIS cards
(``emr.report_card.card_no``), or when the ID number on the card equals the patient's
(``emr.patient.id_no``; compared inside the database, never read out). Card-mismatch cases stay
open: an NNDRS card does not show that the hospital's card was corrected. A death case needs the
death date on the card.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cdcsync.surveil.cases import OPEN_STATUSES, Actor, CaseClosed, CaseStore, Kind
from cdcsync.surveil.pack import RulePack

_QUERY = """
SELECT c.case_id, c.kind, c.disease_code, n.card_no, n.disease_code AS n_code, n.disease_name, n.death_date
  FROM cdcsync.surveil_case c
  JOIN emr.report_card r ON r.patient_id = c.patient_id AND r.org_code = c.org_code
  JOIN recon.nndrs_card n ON n.card_no = r.card_no
 WHERE c.status = ANY(%(open)s) AND c.kind <> 'card_mismatch'
UNION
SELECT c.case_id, c.kind, c.disease_code, n.card_no, n.disease_code, n.disease_name, n.death_date
  FROM cdcsync.surveil_case c
  JOIN emr.patient p ON p.patient_id = c.patient_id AND p.org_code = c.org_code
  JOIN recon.nndrs_card n ON upper(n.id_no) = upper(p.id_no)
 WHERE c.status = ANY(%(open)s) AND c.kind <> 'card_mismatch' AND coalesce(p.id_no, '') <> ''
ORDER BY 1, 4
"""


def close_by_nndrs(conn: psycopg.Connection[Any], pack: RulePack) -> int:
    """Close the open cases an imported NNDRS card covers; returns how many (caller commits)."""
    store = CaseStore(conn)
    actor = Actor(f"rules:{pack.version}", "rules")
    closed: set[int] = set()
    rows = conn.execute(_QUERY, {"open": [str(s) for s in OPEN_STATUSES]}).fetchall()
    for case_id, kind, disease_code, card_no, n_code, n_name, death_date in rows:
        if case_id in closed:
            continue
        disease = pack.disease(n_code or "") or (pack.disease_by_name(n_name) if n_name else None)
        if disease is None or disease.code != disease_code:
            continue
        if kind == Kind.DEATH.value and death_date is None:
            continue
        try:
            store.close_reported(case_id, card_no, actor, f"大疫情网报告卡 {card_no} 已报告{disease.name}（导入）")
        except CaseClosed:  # closed by a doctor meanwhile
            continue
        closed.add(case_id)
    return len(closed)
