"""The database below everything else: migrations (``db init``), roles and grants, the private
cluster of tests and the demo, and the connection pool of request-serving code (``pool``).

Every stage of the flow ``source/ → validate/ + mapping/ → engine/ → sink/`` runs against the
mirror database this package sets up; it imports none of them.
"""
