"""Operations: verified backups, the pre-flight doctor, the daily dynamic evaluation,
heartbeats, fault reports and alerts to the platforms and to people."""
