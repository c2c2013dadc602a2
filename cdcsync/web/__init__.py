"""The workbench on 8884 for doctors, the 防保科 and admins: single sign-on from the HIS, the
popup with its report card, review, write-back to the HIS, audit."""
