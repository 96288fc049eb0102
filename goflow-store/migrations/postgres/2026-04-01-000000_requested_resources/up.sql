-- What a try asked of its node (issue 6): the Kubernetes executor records
-- the CPU and memory its pod requested and was limited to, as the API
-- server admitted them (LimitRange defaults included), beside what the
-- try used. NULL where the executor reserves nothing (in-process, local
-- process) or the pod set no value. CPU in millicores, memory in bytes.
ALTER TABLE task_instances ADD COLUMN cpu_request_millis BIGINT;
ALTER TABLE task_instances ADD COLUMN memory_request_bytes BIGINT;
ALTER TABLE task_instances ADD COLUMN cpu_limit_millis BIGINT;
ALTER TABLE task_instances ADD COLUMN memory_limit_bytes BIGINT;
ALTER TABLE task_tries ADD COLUMN cpu_request_millis BIGINT;
ALTER TABLE task_tries ADD COLUMN memory_request_bytes BIGINT;
ALTER TABLE task_tries ADD COLUMN cpu_limit_millis BIGINT;
ALTER TABLE task_tries ADD COLUMN memory_limit_bytes BIGINT;
