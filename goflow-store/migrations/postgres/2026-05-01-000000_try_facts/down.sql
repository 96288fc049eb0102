ALTER TABLE task_tries DROP COLUMN executor;
ALTER TABLE task_instances DROP COLUMN stop_requested;
ALTER TABLE task_instances DROP COLUMN lost_tries;
