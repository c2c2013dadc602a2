"""Early warning: rule packs over the validated, mapped stream; the rules consumer with its own
slot and checkpoint; pending cases (待确认 / 待确诊 / 待核查) and their history.

Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: a second consumer of the
same validated, mapped changes, which ends in cases for clinicians instead of a platform."""
