"""Mattebox on a render farm: Open Job Description job templates (what AWS Deadline Cloud runs)."""
