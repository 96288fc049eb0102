//! DAGs of no-op tasks shared by the benchmarks.

#![allow(dead_code)]

use goflow_core::{Dag, DagBuilder, Inputs, TaskContext, TaskFuture, TaskOutput, TaskSpec};

/// A task that does nothing and returns `null`.
pub fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        Ok(TaskOutput {
            value: serde_json::Value::Null,
            follow: None,
        })
    })
}

fn spec(id: String, after: Vec<String>) -> TaskSpec {
    TaskSpec {
        id,
        function: "noop",
        options: Default::default(),
        data_upstream: after,
        run: noop,
    }
}

/// `t0 -> t1 -> ... -> t{n-1}`.
pub fn chain(n: usize) -> Dag {
    let mut b = DagBuilder::new("chain").max_active_tasks(100_000);
    for i in 0..n {
        let up = if i == 0 {
            vec![]
        } else {
            vec![format!("t{}", i - 1)]
        };
        b = b.task(spec(format!("t{i}"), up));
    }
    b.build().expect("a valid chain")
}

/// `start -> p0..p{n-1} -> end`.
pub fn fan(id: &str, n: usize) -> Dag {
    let mut b = DagBuilder::new(id)
        .max_active_tasks(100_000)
        .task(spec("start".into(), vec![]));
    for i in 0..n {
        b = b.task(spec(format!("p{i}"), vec!["start".into()]));
    }
    b = b.task(spec(
        "end".into(),
        (0..n).map(|i| format!("p{i}")).collect(),
    ));
    b.build().expect("a valid fan")
}

/// One task, up to 100 runs at once.
pub fn single() -> Dag {
    DagBuilder::new("single")
        .max_active_runs(100)
        .task(spec("t".into(), vec![]))
        .build()
        .expect("a valid DAG")
}
