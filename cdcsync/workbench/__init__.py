"""The doctors' and 防保科's workbench on the PC web listener (8884): SSO from the HIS, the popup,
the report card form, review, write-back, audit. docs/workbench.md, docs/sso.md.

Beside the flow ``source/ → validate/ + mapping/ → engine/ → sink/``: it shows and acts on the
cases ``surveil/`` raises; the cards it writes (``emr.report_card_frontend``) enter the flow at
``source/`` like the HIS's rows."""
