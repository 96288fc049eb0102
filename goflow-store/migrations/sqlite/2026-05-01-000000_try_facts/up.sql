-- Facts of a try (issue 10). `lost_tries`: tries of the current clearing
-- lost with the process running them (a crashed scheduler, a vanished
-- pod); they do not count against `retries`. `stop_requested`: a person
-- asked to stop the active try: JSON {"to": state, "reason": text}, the
-- state it ends in (failed, success, pending for a clear, skipped for a
-- stopped run), applied by the run's owner once the executor stopped it. `task_tries.executor`: the executor
-- that ran the try, resolved once when it was claimed.
ALTER TABLE task_instances ADD COLUMN lost_tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_instances ADD COLUMN stop_requested TEXT;
ALTER TABLE task_tries ADD COLUMN executor TEXT;
