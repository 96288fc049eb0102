ALTER TABLE task_logs DROP COLUMN level;
