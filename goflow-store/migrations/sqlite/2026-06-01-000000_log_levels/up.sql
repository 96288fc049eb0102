-- The level of a log line (issue 11): TRACE, DEBUG, INFO, WARN or ERROR for
-- tracing events of a task and goflow's own lines; NULL for plain output.
ALTER TABLE task_logs ADD COLUMN level TEXT;
