"""Code mapping: the hospital's local codes → the national value domains (值域代码).

In the flow ``source/ → validate/ + mapping/ → engine/ → sink/`` it is the second half of the
transform: the validators compiled in ``validate/`` call the :class:`~.mapper.Mapper` on every row.

  domains   the national domains and the hospital's mapping tables (``mappings/``), loaded and checked
  mapper    local → national for whole rows; an unmapped code is a MAP001 violation, never passed on
  coverage  how much of the hospital's data the mapping set covers (``mappings check``, doctor)
  importer  official complete code tables into ``mappings/national/`` (``codes import``)
  cli       ``cdcsync codes`` and ``cdcsync mappings check``
  reload    a re-export of :mod:`cdcsync.validate.reload` (see there; to be removed)
"""
