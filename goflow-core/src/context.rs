//! What a running task knows about itself and its run.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DagId, DataInterval, RunId, RunType, TaskError, TaskId};

/// What a running task knows about itself and its run.
///
/// A task takes `ctx: &TaskContext` as a parameter to read it:
///
/// ```
/// # use goflow_core::TaskContext;
/// fn extract(ctx: &TaskContext) -> String {
///     format!("sales/{}.csv", ctx.ds())
/// }
/// ```
///
/// Dates come in UTC ([`logical_date`](Self::logical_date)) and in the
/// DAG's time zone ([`logical_date_local`](Self::logical_date_local),
/// [`ds`](Self::ds)). To call a task function in a unit test, build a
/// context with [`TaskContext::for_test`]:
///
/// ```
/// # use goflow_core::{TaskContext, Tz};
/// # use chrono::{TimeZone, Utc};
/// # fn extract(ctx: &TaskContext) -> String { format!("sales/{}.csv", ctx.ds()) }
/// let ctx = TaskContext::for_test("extract")
///     .tz(Tz::Europe__Paris)
///     .logical_date(Utc.with_ymd_and_hms(2026, 5, 1, 22, 0, 0).unwrap())
///     .conf(serde_json::json!({"limit": 10}))
///     .build();
/// // 22:00 UTC is already the 2nd in Paris.
/// assert_eq!(extract(&ctx), "sales/2026-05-02.csv");
/// assert_eq!(ctx.param::<u32>("limit").unwrap(), Some(10));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskContext {
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    try_number: u32,
    max_tries: u32,
    run_type: RunType,
    data_interval: DataInterval,
    conf: serde_json::Value,
    // Absent in contexts written by goflow before the zone was added.
    #[serde(default = "utc", with = "tz_name")]
    tz: Tz,
}

fn utc() -> Tz {
    Tz::UTC
}

impl TaskContext {
    /// A context for task `task_id` of run `run_id` of DAG `dag_id`: the
    /// first of one try, a manual run at the Unix epoch, no conf, UTC.
    /// Set the rest on the builder.
    pub fn builder(dag_id: DagId, run_id: RunId, task_id: TaskId) -> TaskContextBuilder {
        TaskContextBuilder {
            ctx: TaskContext {
                dag_id,
                run_id,
                task_id,
                try_number: 1,
                max_tries: 1,
                run_type: RunType::Manual,
                data_interval: DataInterval::at(DateTime::<Utc>::UNIX_EPOCH),
                conf: serde_json::Value::Object(Default::default()),
                tz: Tz::UTC,
            },
        }
    }

    /// A context for calling task `task_id`'s function in a unit test:
    /// DAG `test-dag`, run `test-run`, a test run at 2026-01-01T00:00Z,
    /// first of one try, no conf, UTC. Set what the test needs on the
    /// builder.
    ///
    /// # Panics
    ///
    /// If `task_id` is not a valid task id (this is a test helper).
    pub fn for_test(task_id: &str) -> TaskContextBuilder {
        let task_id = TaskId::new(task_id)
            .unwrap_or_else(|e| panic!("TaskContext::for_test({task_id:?}): {e}"));
        let dag_id = DagId::new("test-dag").expect("a valid DAG id");
        let run_id = RunId::new("test-run").expect("a valid run id");
        // 2026-01-01T00:00:00Z
        let start = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        Self::builder(dag_id, run_id, task_id)
            .run_type(RunType::Test)
            .logical_date(start)
    }

    /// The DAG.
    pub fn dag_id(&self) -> &DagId {
        &self.dag_id
    }

    /// The run.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// This task.
    pub fn task_id(&self) -> &TaskId {
        &self.task_id
    }

    /// Which try this is, from 1.
    pub fn try_number(&self) -> u32 {
        self.try_number
    }

    /// The most tries this task instance gets.
    pub fn max_tries(&self) -> u32 {
        self.max_tries
    }

    /// Whether this is a retry rather than the first try.
    pub fn is_retry(&self) -> bool {
        self.try_number > 1
    }

    /// How the run came to be.
    pub fn run_type(&self) -> RunType {
        self.run_type
    }

    /// The span of data this run covers, in UTC.
    pub fn data_interval(&self) -> DataInterval {
        self.data_interval
    }

    /// The run's data interval in the DAG's time zone: `(start, end)`.
    pub fn data_interval_local(&self) -> (DateTime<Tz>, DateTime<Tz>) {
        (
            self.data_interval.start.with_timezone(&self.tz),
            self.data_interval.end.with_timezone(&self.tz),
        )
    }

    /// The run's logical date (the seed's `execution_date`): the start of
    /// its data interval, in UTC.
    pub fn logical_date(&self) -> DateTime<Utc> {
        self.data_interval.start
    }

    /// Alias of [`TaskContext::logical_date`], as the seed names it.
    pub fn execution_date(&self) -> DateTime<Utc> {
        self.data_interval.start
    }

    /// The logical date in the DAG's time zone.
    pub fn logical_date_local(&self) -> DateTime<Tz> {
        self.data_interval.start.with_timezone(&self.tz)
    }

    /// The DAG's time zone (`#[dag(tz = "...")]`, UTC by default).
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The logical date as `YYYY-MM-DD`, in the DAG's time zone.
    ///
    /// Airflow formats its `ds` in UTC, so a daily DAG at local midnight
    /// east of Greenwich sees the day before; here it is the date of the
    /// DAG's own calendar.
    pub fn ds(&self) -> String {
        self.logical_date_local().format("%Y-%m-%d").to_string()
    }

    /// The logical date as `YYYYMMDD`, in the DAG's time zone.
    pub fn ds_nodash(&self) -> String {
        self.logical_date_local().format("%Y%m%d").to_string()
    }

    /// The logical date as RFC 3339 with the DAG zone's offset, e.g.
    /// `2026-05-02T00:00:00+02:00`.
    pub fn ts(&self) -> String {
        self.logical_date_local().to_rfc3339()
    }

    /// The run's configuration (`--conf` JSON); `{}` when none was given.
    pub fn conf(&self) -> &serde_json::Value {
        &self.conf
    }

    /// Reads `key` of the run's conf as a `T`; `Ok(None)` when absent.
    pub fn param<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TaskError> {
        match self.conf.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| {
                TaskError::fatal(format!(
                    "conf key {key:?} cannot be read as {}: {e}",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }
}

/// Builds a [`TaskContext`]: see [`TaskContext::builder`] and
/// [`TaskContext::for_test`].
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the TaskContext"]
pub struct TaskContextBuilder {
    ctx: TaskContext,
}

impl TaskContextBuilder {
    /// The DAG (for `for_test`, which names it `test-dag`).
    ///
    /// # Panics
    ///
    /// If `dag_id` is not a valid DAG id.
    pub fn dag(mut self, dag_id: &str) -> Self {
        self.ctx.dag_id =
            DagId::new(dag_id).unwrap_or_else(|e| panic!("TaskContext dag {dag_id:?}: {e}"));
        self
    }

    /// Which try this is, from 1.
    pub fn try_number(mut self, n: u32) -> Self {
        self.ctx.try_number = n;
        self.ctx.max_tries = self.ctx.max_tries.max(n);
        self
    }

    /// The most tries the task instance gets.
    pub fn max_tries(mut self, n: u32) -> Self {
        self.ctx.max_tries = n;
        self
    }

    /// How the run came to be.
    pub fn run_type(mut self, run_type: RunType) -> Self {
        self.ctx.run_type = run_type;
        self
    }

    /// The run's data interval.
    pub fn data_interval(mut self, interval: DataInterval) -> Self {
        self.ctx.data_interval = interval;
        self
    }

    /// A run at one instant: its data interval is empty at `date`, as for
    /// manual runs.
    pub fn logical_date(mut self, date: DateTime<Utc>) -> Self {
        self.ctx.data_interval = DataInterval::at(date);
        self
    }

    /// The run's conf.
    pub fn conf(mut self, conf: serde_json::Value) -> Self {
        self.ctx.conf = conf;
        self
    }

    /// The DAG's time zone.
    pub fn tz(mut self, tz: Tz) -> Self {
        self.ctx.tz = tz;
        self
    }

    /// The context.
    pub fn build(self) -> TaskContext {
        self.ctx
    }
}

/// A zone as its IANA name in JSON (chrono-tz's own serde support is a
/// feature we do not otherwise need).
mod tz_name {
    use super::*;

    pub(super) fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        Tz::from_str(&name)
            .map_err(|_| serde::de::Error::custom(format!("unknown time zone {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn params_from_conf() {
        let ctx = TaskContext::for_test("t")
            .conf(serde_json::json!({"limit": 10, "name": "x"}))
            .build();
        assert_eq!(ctx.param::<u32>("limit").unwrap(), Some(10));
        assert_eq!(ctx.param::<u32>("absent").unwrap(), None);
        let err = ctx.param::<u32>("name").unwrap_err().to_string();
        assert!(err.contains("\"name\""), "{err}");
    }

    #[test]
    fn dates_in_the_dags_zone() {
        let start = Utc.with_ymd_and_hms(2026, 5, 1, 22, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 5, 2, 22, 0, 0).unwrap();
        let ctx = TaskContext::for_test("t")
            .tz(Tz::Europe__Paris)
            .data_interval(DataInterval::new(start, end))
            .build();
        assert_eq!(ctx.logical_date(), start);
        assert_eq!(ctx.ds(), "2026-05-02");
        assert_eq!(ctx.ds_nodash(), "20260502");
        assert_eq!(ctx.ts(), "2026-05-02T00:00:00+02:00");
        let (s, e) = ctx.data_interval_local();
        assert_eq!(s.to_rfc3339(), "2026-05-02T00:00:00+02:00");
        assert_eq!(e.to_rfc3339(), "2026-05-03T00:00:00+02:00");
        // The same instant in UTC is still the 1st.
        let utc = TaskContext::for_test("t").logical_date(start).build();
        assert_eq!(utc.ds(), "2026-05-01");
    }

    #[test]
    fn for_test_defaults() {
        let ctx = TaskContext::for_test("load").try_number(2).build();
        assert_eq!(ctx.task_id().as_str(), "load");
        assert_eq!(ctx.dag_id().as_str(), "test-dag");
        assert_eq!(ctx.run_type(), RunType::Test);
        assert_eq!(ctx.ds(), "2026-01-01");
        assert!(ctx.is_retry());
        assert_eq!(ctx.max_tries(), 2);
        assert_eq!(ctx.conf(), &serde_json::json!({}));
    }

    #[test]
    fn json_round_trip_and_contexts_without_a_zone() {
        let ctx = TaskContext::for_test("t").tz(Tz::America__New_York).build();
        let json = serde_json::to_value(&ctx).unwrap();
        assert_eq!(json["tz"], "America/New_York");
        assert_eq!(
            serde_json::from_value::<TaskContext>(json.clone()).unwrap(),
            ctx
        );
        let mut old = json;
        old.as_object_mut().unwrap().remove("tz");
        assert_eq!(
            serde_json::from_value::<TaskContext>(old).unwrap().tz(),
            Tz::UTC
        );
    }
}
