"""The doctors' and 防保科's workbench on the PC web listener (8884): SSO from the HIS, the popup,
the report card form, review, write-back, audit. docs/workbench.md, docs/sso.md."""
