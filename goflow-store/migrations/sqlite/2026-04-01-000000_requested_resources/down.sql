ALTER TABLE task_tries DROP COLUMN memory_limit_bytes;
ALTER TABLE task_tries DROP COLUMN cpu_limit_millis;
ALTER TABLE task_tries DROP COLUMN memory_request_bytes;
ALTER TABLE task_tries DROP COLUMN cpu_request_millis;
ALTER TABLE task_instances DROP COLUMN memory_limit_bytes;
ALTER TABLE task_instances DROP COLUMN cpu_limit_millis;
ALTER TABLE task_instances DROP COLUMN memory_request_bytes;
ALTER TABLE task_instances DROP COLUMN cpu_request_millis;
