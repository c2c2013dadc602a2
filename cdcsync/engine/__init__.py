"""The CDC engine: the loop that carries changes from ``source/`` through validation and mapping to ``sink/``.

``pipeline`` (transform → batcher → bounded delivery window → staged sink → transactional checkpoint),
``delivery`` (the window of batches in flight), ``checkpoint`` (acked LSN, delivery stats, quarantine and
delivered keys in one transaction), ``daemon`` (one pipeline per destination, ``cdcsync run``),
``status``/``health`` (what ``cdcsync status``, 8883 and the status page show) and ``cli``
(``run``, ``snapshot``, ``slots``, ``status``).
"""
