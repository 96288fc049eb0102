//! The heart of scheduling: given a DAG and where each of its task
//! instances stands in one run, decide what runs next, what is skipped,
//! what is retried, and when the run is over.
//!
//! [`RunProgress`] is pure: no clock, no I/O. The durable scheduler drives
//! it (for `dags test` too), persisting its changes as they go.

use std::time::Duration;

use crate::trigger::{UpstreamCounts, Verdict};
use crate::{Dag, EdgeKind, Error, RunState, TaskError, TaskOutput, TaskState};

/// Where one task instance stands in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskStatus {
    /// Its state.
    pub state: TaskState,
    /// Tries started so far.
    pub tries: u32,
    /// Of those, tries lost with the process running them: they do not
    /// count against the task's `retries`.
    pub lost: u32,
    /// For a successful branch task, the downstreams it chose.
    pub follow: Option<Vec<String>>,
}

impl Default for TaskStatus {
    fn default() -> Self {
        Self {
            state: TaskState::Pending,
            tries: 0,
            lost: 0,
            follow: None,
        }
    }
}

/// A state change decided by [`RunProgress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// Index of the task in [`Dag::tasks`].
    pub task: usize,
    /// Its state before.
    pub from: TaskState,
    /// Its state now.
    pub to: TaskState,
}

/// How a try ended, as far as scheduling cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded; a branch task names the downstreams to follow.
    Success {
        /// Chosen downstreams of a branch task.
        follow: Option<Vec<String>>,
    },
    /// The task skipped itself.
    Skipped,
    /// It failed; `retryable` is false for fatal errors.
    Failed {
        /// Whether another try may help.
        retryable: bool,
    },
    /// The process running it was lost (a crashed scheduler, a vanished
    /// pod): tried again at once without using a retry, while the task's
    /// `max_lost_tries` allows.
    Lost,
}

impl Outcome {
    /// The outcome of a task body's result.
    pub fn of(result: &Result<TaskOutput, TaskError>) -> Outcome {
        match result {
            Ok(out) => Outcome::Success {
                follow: out.follow.clone(),
            },
            Err(e) if e.is_skip() => Outcome::Skipped,
            Err(e) if e.is_lost() => Outcome::Lost,
            Err(e) => Outcome::Failed {
                retryable: e.is_retryable(),
            },
        }
    }
}

/// What [`RunProgress::finish`] decided for a finished try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The task instance succeeded.
    Success,
    /// The task instance is skipped.
    Skipped,
    /// Another try is due after `delay`.
    Retry {
        /// The retry delay.
        delay: Duration,
    },
    /// The task instance failed for good.
    Failed,
}

/// The states of all task instances of one run.
///
/// Besides each task's status it keeps, per task, running counts of its
/// upstreams' outcomes, so deciding a task costs O(1) and settling after
/// a change touches only what the change can affect: a fan-in of 10,000
/// upstreams is not re-counted on every completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunProgress {
    tasks: Vec<TaskStatus>,
    tally: Vec<Tally>,
}

/// Outcomes of a task's direct upstreams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    all: UpstreamCounts,
    data_success: usize,
    data_failed: usize,
    data_skipped: usize,
    data_total: usize,
    /// A branch upstream succeeded without choosing this task.
    branched_away: bool,
}

/// Which tally bucket a state counts in: success, failed, skipped.
fn bucket(state: TaskState) -> Option<usize> {
    match state {
        TaskState::Success => Some(0),
        TaskState::Failed | TaskState::UpstreamFailed => Some(1),
        TaskState::Skipped => Some(2),
        _ => None,
    }
}

impl RunProgress {
    /// A fresh run of `dag`: every task pending.
    pub fn new(dag: &Dag) -> Self {
        Self::from_statuses(dag, Vec::new())
    }

    /// A run whose task instances stand at `statuses` (indexed like
    /// [`Dag::tasks`]), e.g. as loaded from a database.
    pub fn from_statuses(dag: &Dag, mut statuses: Vec<TaskStatus>) -> Self {
        statuses.resize(dag.tasks().len(), TaskStatus::default());
        let mut tally = vec![Tally::default(); dag.tasks().len()];
        for (i, node) in dag.tasks().iter().enumerate() {
            tally[i].all.total = node.upstream.len();
            tally[i].data_total = node
                .upstream
                .iter()
                .filter(|u| u.kind == EdgeKind::Data)
                .count();
        }
        let mut progress = Self {
            tasks: statuses,
            tally,
        };
        for i in 0..dag.tasks().len() {
            progress.count(dag, i, progress.tasks[i].state, 1);
        }
        progress
    }

    /// Adds (`sign = 1`) or removes (`-1`) task `i`'s outcome `state` from
    /// its downstreams' tallies.
    fn count(&mut self, dag: &Dag, i: usize, state: TaskState, sign: isize) {
        let Some(b) = bucket(state) else { return };
        for &d in dag.downstream(i) {
            let node = &dag.tasks()[d];
            let data = node
                .upstream
                .iter()
                .any(|u| u.task == i && u.kind == EdgeKind::Data);
            let unchosen = b == 0
                && self.tasks[i]
                    .follow
                    .as_ref()
                    .is_some_and(|f| !f.iter().any(|t| t == node.id.as_str()));
            let t = &mut self.tally[d];
            let bump = |n: &mut usize| *n = n.saturating_add_signed(sign);
            match b {
                0 => bump(&mut t.all.success),
                1 => bump(&mut t.all.failed),
                _ => bump(&mut t.all.skipped),
            }
            if data {
                match b {
                    0 => bump(&mut t.data_success),
                    1 => bump(&mut t.data_failed),
                    _ => bump(&mut t.data_skipped),
                }
            }
            if unchosen {
                t.branched_away = sign > 0;
            }
        }
    }

    /// Where task `i` stands.
    pub fn status(&self, i: usize) -> &TaskStatus {
        &self.tasks[i]
    }

    /// Where every task stands.
    pub fn statuses(&self) -> &[TaskStatus] {
        &self.tasks
    }

    fn set(&mut self, dag: &Dag, i: usize, to: TaskState) -> Result<Change, Error> {
        let from = self.tasks[i].state;
        self.tasks[i].state = from.transition(to)?;
        if bucket(from) != bucket(to) {
            self.count(dag, i, from, -1);
            self.count(dag, i, to, 1);
        }
        Ok(Change { task: i, from, to })
    }

    /// Decides every pending task whose upstreams allow it: it becomes
    /// `scheduled` (may run), `skipped` or `upstream_failed`. Returns the
    /// changes, upstreams before downstreams.
    ///
    /// Rules, in order:
    /// 1. A branch upstream that succeeded without choosing the task skips it.
    /// 2. The task's trigger rule judges all its direct upstreams.
    /// 3. A task that may run still needs every data upstream to have
    ///    succeeded, since it takes their outputs: otherwise it waits, or
    ///    ends `upstream_failed` (a data upstream failed) or `skipped`.
    pub fn settle(&mut self, dag: &Dag) -> Vec<Change> {
        let mut changes = Vec::new();
        for &i in dag.topological_order() {
            if let Some(change) = self.decide(dag, i) {
                changes.push(change);
            }
        }
        changes
    }

    /// Like [`RunProgress::settle`], but looks only at what changes to
    /// `tasks` can affect: their downstreams, and transitively the
    /// downstreams of tasks this skips or fails.
    pub fn settle_after(&mut self, dag: &Dag, tasks: &[usize]) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut work: Vec<usize> = tasks
            .iter()
            .flat_map(|t| dag.downstream(*t))
            .copied()
            .collect();
        while let Some(i) = work.pop() {
            if let Some(change) = self.decide(dag, i) {
                if change.to.is_terminal() {
                    work.extend_from_slice(dag.downstream(i));
                }
                changes.push(change);
            }
        }
        changes
    }

    /// Applies the rules to task `i` if it is pending.
    fn decide(&mut self, dag: &Dag, i: usize) -> Option<Change> {
        if self.tasks[i].state != TaskState::Pending {
            return None;
        }
        let t = self.tally[i];
        let verdict = if t.branched_away {
            Verdict::Skip
        } else {
            match dag.tasks()[i].options.trigger_rule().evaluate(&t.all) {
                Verdict::Run if t.data_failed > 0 => Verdict::UpstreamFailed,
                Verdict::Run if t.data_skipped > 0 => Verdict::Skip,
                Verdict::Run if t.data_success < t.data_total => Verdict::Wait,
                other => other,
            }
        };
        let to = match verdict {
            Verdict::Wait => return None,
            Verdict::Run => TaskState::Scheduled,
            Verdict::Skip => TaskState::Skipped,
            Verdict::UpstreamFailed => TaskState::UpstreamFailed,
        };
        self.set(dag, i, to).ok()
    }

    /// Scheduled tasks in the order they should get slots: higher priority
    /// weight first, then upstreams before downstreams.
    pub fn runnable(&self, dag: &Dag) -> Vec<usize> {
        let mut ready: Vec<(usize, usize)> = dag
            .topological_order()
            .iter()
            .enumerate()
            .filter(|(_, i)| self.tasks[**i].state == TaskState::Scheduled)
            .map(|(rank, i)| (rank, *i))
            .collect();
        ready.sort_by_key(|(rank, i)| (-dag.tasks()[*i].options.priority_weight(), *rank));
        ready.into_iter().map(|(_, i)| i).collect()
    }

    /// Task instances held by an executor (queued or running).
    pub fn active(&self) -> usize {
        self.tasks.iter().filter(|t| t.state.is_active()).count()
    }

    /// Hands scheduled task `i` to an executor: it becomes `queued` and a
    /// new try begins. Returns the try number.
    pub fn queue(&mut self, dag: &Dag, i: usize) -> Result<u32, Error> {
        self.set(dag, i, TaskState::Queued)?;
        self.tasks[i].tries += 1;
        self.tasks[i].follow = None;
        Ok(self.tasks[i].tries)
    }

    /// The executor started task `i`.
    pub fn start(&mut self, dag: &Dag, i: usize) -> Result<Change, Error> {
        self.set(dag, i, TaskState::Running)
    }

    /// Records how the current try of task `i` ended and decides what
    /// follows: success, skip, a retry after a delay, or failure.
    pub fn finish(
        &mut self,
        dag: &Dag,
        i: usize,
        outcome: Outcome,
    ) -> Result<(Change, Finish), Error> {
        let (to, finish) = match outcome {
            Outcome::Success { follow } => {
                self.tasks[i].follow = follow;
                (TaskState::Success, Finish::Success)
            }
            Outcome::Skipped => (TaskState::Skipped, Finish::Skipped),
            Outcome::Failed { retryable } => {
                let policy = dag.tasks()[i].options.retry_policy();
                let status = &self.tasks[i];
                match policy
                    .delay_after(status.tries.saturating_sub(status.lost))
                    .filter(|_| retryable)
                {
                    Some(delay) => (TaskState::UpForRetry, Finish::Retry { delay }),
                    None => (TaskState::Failed, Finish::Failed),
                }
            }
            Outcome::Lost => {
                if self.tasks[i].lost < dag.tasks()[i].options.max_lost_tries() {
                    self.tasks[i].lost += 1;
                    (
                        TaskState::UpForRetry,
                        Finish::Retry {
                            delay: Duration::ZERO,
                        },
                    )
                } else {
                    (TaskState::Failed, Finish::Failed)
                }
            }
        };
        let change = self.set(dag, i, to)?;
        Ok((change, finish))
    }

    /// Ends task `i`, which no executor holds, in the terminal state `to`
    /// (a stop asked for by a person): e.g. a task waiting for its retry
    /// ends `failed`, one not yet run `skipped`.
    pub fn end(&mut self, dag: &Dag, i: usize, to: TaskState) -> Result<Change, Error> {
        if !to.is_terminal() || self.tasks[i].state.is_active() {
            return Err(Error::IllegalTransition {
                what: "task instance",
                from: self.tasks[i].state.as_str(),
                to: to.as_str(),
            });
        }
        self.set(dag, i, to)
    }

    /// The retry delay of task `i` has passed: it is scheduled again.
    pub fn retry_due(&mut self, dag: &Dag, i: usize) -> Result<Change, Error> {
        self.set(dag, i, TaskState::Scheduled)
    }

    /// Clears task `i` for another run of it: back to `pending`, tries
    /// kept so numbering continues. `None` when it is pending already or
    /// an executor holds it (it must be cancelled first).
    pub fn clear(&mut self, dag: &Dag, i: usize) -> Option<Change> {
        if self.tasks[i].state == TaskState::Pending {
            return None;
        }
        let change = self.set(dag, i, TaskState::Pending).ok()?;
        // The branch choice went with the outcome; the tallies were
        // updated while it was still known.
        self.tasks[i].follow = None;
        Some(change)
    }

    /// The run's state: `running` while any task is unfinished, then
    /// `failed` if any task failed or could not run because of a failure,
    /// else `success`.
    pub fn run_state(&self) -> RunState {
        if self.tasks.iter().any(|t| !t.state.is_terminal()) {
            RunState::Running
        } else if self
            .tasks
            .iter()
            .any(|t| matches!(t.state, TaskState::Failed | TaskState::UpstreamFailed))
        {
            RunState::Failed
        } else {
            RunState::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::tests::spec;
    use crate::{Backoff, DagBuilder, TaskOptions, TriggerRule};

    fn ok() -> Outcome {
        Outcome::Success { follow: None }
    }

    fn fail() -> Outcome {
        Outcome::Failed { retryable: true }
    }

    fn states(dag: &Dag, p: &RunProgress) -> Vec<String> {
        dag.tasks()
            .iter()
            .zip(p.statuses())
            .map(|(t, s)| format!("{}={}", t.id, s.state))
            .collect()
    }

    /// Runs `i` to `outcome` and settles.
    fn run(dag: &Dag, p: &mut RunProgress, id: &str, outcome: Outcome) -> Finish {
        let i = dag.index_of(id).unwrap();
        p.queue(dag, i).unwrap();
        p.start(dag, i).unwrap();
        let (_, finish) = p.finish(dag, i, outcome).unwrap();
        p.settle(dag);
        finish
    }

    fn with_rule(id: &str, data: &[&str], rule: TriggerRule) -> crate::TaskSpec {
        let mut s = spec(id, data);
        s.options.trigger_rule = Some(rule);
        s
    }

    #[test]
    fn chain_runs_in_order_and_succeeds() {
        let dag = DagBuilder::new("chain")
            .task(spec("a", &[]))
            .task(spec("b", &["a"]))
            .task(spec("c", &["b"]))
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        let changes = p.settle(&dag);
        assert_eq!(changes.len(), 1);
        assert_eq!(p.runnable(&dag), [0]);
        run(&dag, &mut p, "a", ok());
        assert_eq!(p.runnable(&dag), [1]);
        run(&dag, &mut p, "b", ok());
        assert_eq!(p.run_state(), RunState::Running);
        run(&dag, &mut p, "c", ok());
        assert_eq!(p.run_state(), RunState::Success);
    }

    #[test]
    fn failure_propagates_and_fails_the_run() {
        let dag = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(spec("b", &["a"]))
            .task(spec("c", &["b"]))
            .task(with_rule("cleanup", &[], TriggerRule::AllDone))
            .order("c", "cleanup")
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        assert_eq!(run(&dag, &mut p, "a", fail()), Finish::Failed);
        assert_eq!(
            states(&dag, &p),
            [
                "a=failed",
                "b=upstream_failed",
                "c=upstream_failed",
                "cleanup=scheduled"
            ]
        );
        run(&dag, &mut p, "cleanup", ok());
        assert_eq!(p.run_state(), RunState::Failed);
    }

    #[test]
    fn retries_follow_the_policy() {
        let mut a = spec("a", &[]);
        a.options = TaskOptions {
            retries: Some(2),
            retry_delay: Some(Duration::from_secs(10)),
            backoff: Some(Backoff::Exponential),
            ..Default::default()
        };
        let dag = DagBuilder::new("x").task(a).build().unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        assert_eq!(
            run(&dag, &mut p, "a", fail()),
            Finish::Retry {
                delay: Duration::from_secs(10)
            }
        );
        assert_eq!(p.status(0).state, TaskState::UpForRetry);
        assert_eq!(p.run_state(), RunState::Running);
        p.retry_due(&dag, 0).unwrap();
        assert_eq!(
            run(&dag, &mut p, "a", fail()),
            Finish::Retry {
                delay: Duration::from_secs(20)
            }
        );
        p.retry_due(&dag, 0).unwrap();
        assert_eq!(run(&dag, &mut p, "a", fail()), Finish::Failed);
        assert_eq!(p.status(0).tries, 3);
        assert_eq!(p.run_state(), RunState::Failed);
    }

    #[test]
    fn lost_tries_do_not_use_retries_and_have_their_own_cap() {
        let mut a = spec("a", &[]);
        a.options = TaskOptions {
            retries: Some(1),
            retry_delay: Some(Duration::from_secs(10)),
            max_lost_tries: Some(2),
            ..Default::default()
        };
        let dag = DagBuilder::new("x").task(a).build().unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        let at_once = Finish::Retry {
            delay: Duration::ZERO,
        };
        // Two tries lost to crashes: each is tried again at once.
        assert_eq!(run(&dag, &mut p, "a", Outcome::Lost), at_once);
        p.retry_due(&dag, 0).unwrap();
        assert_eq!(run(&dag, &mut p, "a", Outcome::Lost), at_once);
        p.retry_due(&dag, 0).unwrap();
        // The task's own retry is still there after them.
        assert_eq!(
            run(&dag, &mut p, "a", fail()),
            Finish::Retry {
                delay: Duration::from_secs(10)
            }
        );
        p.retry_due(&dag, 0).unwrap();
        // A third loss is past the cap: the task fails rather than loop.
        assert_eq!(run(&dag, &mut p, "a", Outcome::Lost), Finish::Failed);
        assert_eq!(p.status(0).tries, 4);
        assert_eq!(p.status(0).lost, 2);
        assert_eq!(p.run_state(), RunState::Failed);
    }

    #[test]
    fn a_lost_error_is_a_lost_outcome() {
        assert_eq!(
            Outcome::of(&Err(TaskError::lost("the scheduler stopped"))),
            Outcome::Lost
        );
        assert_eq!(
            Outcome::of(&Err(TaskError::stopped("by admin"))),
            Outcome::Failed { retryable: false }
        );
    }

    #[test]
    fn fatal_errors_are_not_retried() {
        let mut a = spec("a", &[]);
        a.options.retries = Some(5);
        let dag = DagBuilder::new("x").task(a).build().unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        let finish = run(&dag, &mut p, "a", Outcome::Failed { retryable: false });
        assert_eq!(finish, Finish::Failed);
    }

    #[test]
    fn skip_propagates_through_all_success_but_not_none_failed() {
        let dag = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(spec("b", &[]))
            .task(spec("c", &[]))
            .task(with_rule("join", &[], TriggerRule::NoneFailed))
            .order("a", "b")
            .order("b", "c")
            .order("a", "join")
            .order("b", "join")
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        run(&dag, &mut p, "a", ok());
        run(&dag, &mut p, "b", Outcome::Skipped);
        assert_eq!(
            states(&dag, &p),
            ["a=success", "b=skipped", "c=skipped", "join=scheduled"]
        );
        run(&dag, &mut p, "join", ok());
        assert_eq!(p.run_state(), RunState::Success);
    }

    #[test]
    fn branch_skips_the_paths_not_chosen() {
        let dag = DagBuilder::new("x")
            .task(spec("choose", &[]))
            .task(spec("big", &[]))
            .task(spec("small", &[]))
            .task(with_rule("report", &[], TriggerRule::NoneFailed))
            .order("choose", "big")
            .order("choose", "small")
            .order("big", "report")
            .order("small", "report")
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        run(
            &dag,
            &mut p,
            "choose",
            Outcome::Success {
                follow: Some(vec!["small".into()]),
            },
        );
        assert_eq!(
            states(&dag, &p),
            [
                "choose=success",
                "big=skipped",
                "small=scheduled",
                "report=pending"
            ]
        );
        run(&dag, &mut p, "small", ok());
        assert_eq!(p.status(3).state, TaskState::Scheduled);
    }

    #[test]
    fn data_inputs_must_have_succeeded_whatever_the_rule() {
        // `report` takes `a`'s output but runs on all_done: when `a` fails,
        // it cannot get its input.
        let dag = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(with_rule("report", &["a"], TriggerRule::AllDone))
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        run(&dag, &mut p, "a", fail());
        assert_eq!(p.status(1).state, TaskState::UpstreamFailed);

        // one_success fires early, but a data upstream still running holds it.
        let dag = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(spec("b", &[]))
            .task(with_rule("c", &["b"], TriggerRule::OneSuccess))
            .order("a", "c")
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        run(&dag, &mut p, "a", ok());
        assert_eq!(p.status(2).state, TaskState::Pending);
        run(&dag, &mut p, "b", ok());
        assert_eq!(p.status(2).state, TaskState::Scheduled);
    }

    #[test]
    fn runnable_prefers_priority_then_topology() {
        let mut low = spec("low", &[]);
        low.options.priority_weight = Some(1);
        let mut high = spec("high", &[]);
        high.options.priority_weight = Some(10);
        let dag = DagBuilder::new("x")
            .task(low)
            .task(spec("mid", &[]))
            .task(high)
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        let order: Vec<&str> = p
            .runnable(&dag)
            .iter()
            .map(|i| dag.tasks()[*i].id.as_str())
            .collect();
        assert_eq!(order, ["high", "low", "mid"]);
    }

    #[test]
    fn illegal_moves_are_refused() {
        let dag = DagBuilder::new("x").task(spec("a", &[])).build().unwrap();
        let mut p = RunProgress::new(&dag);
        assert!(p.start(&dag, 0).is_err(), "a pending task cannot start");
        assert!(p.finish(&dag, 0, ok()).is_err());
    }

    /// A tiny deterministic generator, so the equivalence test needs no
    /// dependency and always explores the same cases.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    /// Incremental settling reaches exactly the states a full pass would,
    /// over random DAGs, trigger rules, branches and outcomes.
    #[test]
    fn settle_after_matches_full_settle() {
        let mut rng = Lcg(42);
        for case in 0..300 {
            let n = 2 + rng.next(12);
            let mut b = DagBuilder::new("r");
            for i in 0..n {
                let mut data = Vec::new();
                for j in 0..i {
                    if rng.next(4) == 0 {
                        data.push(format!("t{j}"));
                    }
                }
                let refs: Vec<&str> = data.iter().map(String::as_str).collect();
                let mut t = spec(&format!("t{i}"), &refs);
                t.options.trigger_rule = Some(TriggerRule::ALL[rng.next(8)]);
                b = b.task(t);
                for j in 0..i {
                    if rng.next(6) == 0 {
                        b = b.order(format!("t{j}"), format!("t{i}"));
                    }
                }
            }
            let dag = b.build().unwrap();
            let mut inc = RunProgress::new(&dag);
            let mut full = RunProgress::new(&dag);
            inc.settle(&dag);
            full.settle(&dag);
            loop {
                let ready = inc.runnable(&dag);
                assert_eq!(ready, full.runnable(&dag), "case {case}");
                let Some(&i) = ready.get(rng.next(ready.len())) else {
                    break;
                };
                let outcome = match rng.next(4) {
                    0 => Outcome::Skipped,
                    1 => Outcome::Failed { retryable: false },
                    2 => Outcome::Success {
                        follow: Some(
                            dag.downstream(i)
                                .iter()
                                .filter(|_| rng.next(2) == 0)
                                .map(|d| dag.tasks()[*d].id.to_string())
                                .collect(),
                        ),
                    },
                    _ => Outcome::Success { follow: None },
                };
                for p in [&mut inc, &mut full] {
                    p.queue(&dag, i).unwrap();
                    p.start(&dag, i).unwrap();
                    p.finish(&dag, i, outcome.clone()).unwrap();
                }
                inc.settle_after(&dag, &[i]);
                full.settle(&dag);
                assert_eq!(inc.statuses(), full.statuses(), "case {case}");
            }
            assert_eq!(inc.run_state(), full.run_state());
            assert!(
                inc.run_state().is_terminal(),
                "case {case}: {:?}",
                states(&dag, &inc)
            );
        }
    }

    #[test]
    fn clearing_a_failed_task_runs_it_and_its_downstreams_again() {
        let dag = DagBuilder::new("x")
            .task(spec("a", &[]))
            .task(spec("b", &["a"]))
            .build()
            .unwrap();
        let mut p = RunProgress::new(&dag);
        p.settle(&dag);
        run(&dag, &mut p, "a", fail());
        assert_eq!(p.run_state(), RunState::Failed);
        p.clear(&dag, 0).unwrap();
        p.clear(&dag, 1).unwrap();
        p.settle(&dag);
        assert_eq!(states(&dag, &p), ["a=scheduled", "b=pending"]);
        run(&dag, &mut p, "a", ok());
        assert_eq!(p.status(0).tries, 2, "try numbers continue after a clear");
        run(&dag, &mut p, "b", ok());
        assert_eq!(p.run_state(), RunState::Success);
    }
}
