-- Each connection may have its own scan interval (NULL: the service's default).
ALTER TABLE connections ADD COLUMN scan_interval_secs INTEGER;
