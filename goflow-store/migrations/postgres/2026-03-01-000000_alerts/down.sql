DROP INDEX dag_runs_end_date_idx;
DROP TABLE cursors;
DROP TABLE alerts;
