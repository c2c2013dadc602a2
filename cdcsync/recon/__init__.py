"""Reconciliation and reporting, beside the flow (``source/ → validate/ + mapping/ → engine/ →
sink/``): it reads what the engine recorded and what the hospital holds, for DBAs and the 防保科.

  report    the daily reconciliation report (``cdcsync reconcile``)
  latency   delivery latency histograms and daily aggregates (written by the engine's checkpoint)
  nndrs     import of NNDRS (大疫情网) card exports into ``recon.nndrs_card`` for the daily comparison
  codemap   the mapping files copied into the reference tables the ``recon.*`` views join on
  cli       ``cdcsync reconcile`` and ``cdcsync nndrs``
"""
