DROP TABLE pools;
DROP TABLE schedulers;
DROP TABLE task_logs;
DROP TABLE task_outputs;
DROP TABLE task_tries;
DROP TABLE task_instances;
DROP TABLE dag_runs;
DROP TABLE dags;
