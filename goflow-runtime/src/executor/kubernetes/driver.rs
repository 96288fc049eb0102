//! The executor's moving parts: the tries it tracks, the watch task that
//! turns Job and pod changes into decisions, timers, and the tasks that
//! create Jobs and finish tries.
//!
//! Watch events only trigger decisions: a try is finished by [`finish`],
//! which reads the Job and its pod afresh, so that the order in which the
//! Job and pod watches deliver their events does not matter.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use goflow_core::{TaskError, TaskOutput};
use goflow_store::LogStream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::KubernetesConfig;
use super::errors::{describe, describe_watch};
use super::manifest::{
    instance_selector, job_manifest, job_name_of, namespace_of, task_instance_selector, JobParams,
    ANNOTATION_DAG, ANNOTATION_RUN, ANNOTATION_TASK, ANNOTATION_TRY, CONTAINER, LABEL_JOB,
};
use super::{pod_log, resources};
use crate::executor::{Adoption, EventSender, ExecutorEvent, Launch, TryKey, TryMetrics};
use crate::task_api::{launch_payload, TaskApi, TryRef};
use crate::worker::WorkerResult;

/// Waiting reasons of a container that is on its way.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];
/// Waiting reasons that no amount of waiting fixes.
const CANNOT_START: [&str; 2] = ["InvalidImageName", "ErrImageNeverPull"];
/// How long a new try waits for the Jobs of older tries it deleted to be
/// gone (their pods terminated) before it starts anyway.
const SUPERSEDE_WAIT: Duration = Duration::from_secs(120);
/// How often it looks.
const SUPERSEDE_POLL: Duration = Duration::from_millis(500);

pub(crate) struct Shared {
    pub client: Result<kube::Client, String>,
    pub config: KubernetesConfig,
    pub task_api: TaskApi,
    limiter: DefaultDirectRateLimiter,
    state: Mutex<State>,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    /// Start watching a namespace.
    Watch(Arc<str>),
    /// The earliest timer may have changed.
    Wake,
}

#[derive(Default)]
struct State {
    /// By Job name.
    tries: HashMap<Arc<str>, Tracked>,
    by_key: HashMap<TryKey, Arc<str>>,
    namespaces: HashMap<Arc<str>, Namespace>,
    timers: BTreeSet<(Instant, Arc<str>)>,
}

#[derive(Default)]
struct Namespace {
    /// Why watching it fails, while it does.
    last_error: Option<String>,
    /// Jobs seen since the watch's last (re-)list began.
    listing: Option<HashSet<Arc<str>>>,
    /// Jobs whose pods were seen since the pod watch's last (re-)list
    /// began.
    pod_listing: Option<HashSet<Arc<str>>>,
}

struct Tracked {
    key: TryKey,
    try_ref: TryRef,
    namespace: Arc<str>,
    events: EventSender,
    phase: Phase,
    timeout: Option<Duration>,
    pending_until: Option<Instant>,
    deadline: Option<Instant>,
    /// Why its pod is not running yet, as Kubernetes says.
    waiting: Option<Box<str>>,
    cancel_requested: bool,
    /// Whether `Started` was sent (once the Job exists).
    started: bool,
    /// Taken over from an earlier scheduler process.
    adopted: bool,
    /// The pod of its Job the watch knows to exist, if any.
    pod: Option<Box<str>>,
    /// Since when the worker's silence counts: when its container was seen
    /// running, or when the try was adopted.
    alive_since: Option<Instant>,
    /// When its worker's silence is checked next.
    silence_check: Option<Instant>,
    /// How far its pod's log has been copied.
    log: Arc<Mutex<pod_log::Progress>>,
    /// The task following the pod's log while it runs.
    follower: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The Job is being created (or looked up, when adopted).
    Creating,
    /// The Job exists; its task container has not started.
    Pending,
    /// The task container started.
    Running,
    /// [`finish`] is at work: nothing else changes the try.
    Finishing,
}

/// Why a try is being finished.
#[derive(Debug)]
enum Cause {
    /// The task container terminated, or the Job or pod reached an end.
    Ended,
    /// The Job was deleted, not by goflow.
    Deleted,
    /// `cancel`.
    Cancelled,
    /// The executor's own timeout backstop.
    TimedOut,
    /// Not started within the pending deadline.
    PendingDeadline,
    /// A pod that will never start.
    CannotStart(String),
    /// The worker stopped heartbeating and the watch knows no pod of it.
    Lost(Duration),
    /// A newer try of the same task instance started.
    Superseded(u32),
}

impl Shared {
    pub(crate) fn start(
        client: Result<kube::Client, String>,
        config: KubernetesConfig,
        task_api: TaskApi,
    ) -> Arc<Shared> {
        let (commands, rx) = mpsc::unbounded_channel();
        let per_second = NonZeroU32::new(config.creates_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.create_burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst));
        let selector = instance_selector(&config.instance);
        let watch_client = client.as_ref().ok().cloned();
        let shared = Arc::new(Shared {
            client,
            config,
            task_api,
            limiter,
            state: Mutex::default(),
            commands,
        });
        if let Some(client) = watch_client {
            tokio::spawn(drive(Arc::downgrade(&shared), rx, client, selector));
        }
        shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock leaves the maps consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn tracked(&self) -> usize {
        self.lock().tries.len()
    }

    pub(crate) fn watched_namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lock()
            .namespaces
            .keys()
            .map(|n| n.to_string())
            .collect();
        v.sort();
        v
    }

    fn client(&self) -> Option<kube::Client> {
        self.client.as_ref().ok().cloned()
    }

    /// Starts tracking the try of `launch` as Job `name`, `logged_lines`
    /// of its output stored already; the namespace is watched from now on.
    /// `false` if the Job is tracked already.
    fn track(
        &self,
        name: &Arc<str>,
        namespace: &str,
        launch: &Launch,
        events: EventSender,
        logged_lines: u64,
        adopted: bool,
    ) -> bool {
        let key = launch.key.clone();
        let try_ref = TryRef::of(launch);
        let timeout = launch.dag.tasks()[key.task].options.timeout;
        let mut st = self.lock();
        if st.tries.contains_key(name) {
            return false;
        }
        let namespace = match st.namespaces.get_key_value(namespace) {
            Some((ns, _)) => Arc::clone(ns),
            None => {
                let ns: Arc<str> = Arc::from(namespace);
                st.namespaces.insert(Arc::clone(&ns), Namespace::default());
                let _ = self.commands.send(Command::Watch(Arc::clone(&ns)));
                ns
            }
        };
        st.by_key.insert(key.clone(), Arc::clone(name));
        st.tries.insert(
            Arc::clone(name),
            Tracked {
                key,
                try_ref,
                namespace,
                events,
                phase: Phase::Creating,
                timeout,
                pending_until: None,
                deadline: None,
                waiting: None,
                cancel_requested: false,
                started: false,
                adopted,
                pod: None,
                alive_since: None,
                silence_check: None,
                log: pod_log::Progress::after(logged_lines),
                follower: None,
            },
        );
        true
    }

    /// Whether the try of Job `name` is still followed.
    pub(crate) fn is_tracked(&self, name: &str) -> bool {
        self.lock().tries.contains_key(name)
    }

    /// Forgets a try and its timers; its token stops working.
    fn untrack(&self, name: &Arc<str>) -> Option<Tracked> {
        let mut st = self.lock();
        let t = st.tries.remove(name)?;
        st.by_key.remove(&t.key);
        for at in [t.pending_until, t.deadline, t.silence_check]
            .into_iter()
            .flatten()
        {
            st.timers.remove(&(at, Arc::clone(name)));
        }
        drop(st);
        self.task_api.unregister(&t.try_ref);
        if let Some(follower) = &t.follower {
            follower.abort();
        }
        Some(t)
    }

    /// Ends a try that never had a Job to finish.
    fn fail(&self, name: &Arc<str>, error: TaskError) {
        self.end(name, Err(error), TryMetrics::default());
    }

    /// Ends a try without [`finish`] (no Job to read or delete).
    fn end(&self, name: &Arc<str>, result: Result<TaskOutput, TaskError>, metrics: TryMetrics) {
        if let Some(t) = self.untrack(name) {
            t.events.send_now(ExecutorEvent::Finished {
                key: t.key,
                result,
                metrics,
            });
        }
    }

    /// Writes a `system` line to a tracked try's log.
    fn note(&self, name: &str, line: String) {
        if let Some(t) = self.lock().tries.get(name) {
            t.events.send_now(ExecutorEvent::Log {
                key: t.key.clone(),
                stream: LogStream::System,
                line,
            });
        }
    }

    /// Whether the try of Job `name` was cancelled before its Job existed.
    fn cancel_requested(&self, name: &str) -> bool {
        self.lock()
            .tries
            .get(name)
            .is_some_and(|t| t.cancel_requested)
    }

    /// A try this executor still follows is being replaced by try
    /// `by` of the same task instance: it ends (its Job is deleted).
    fn supersede(self: &Arc<Self>, name: &str, by: u32) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some((name, _)) = st.tries.get_key_value(name) {
            let name = Arc::clone(name);
            self.finalize(st, &name, Cause::Superseded(by));
        }
    }

    /// [`KubernetesConfig::heartbeat_timeout`], at least a few
    /// milliseconds.
    fn heartbeat_timeout(&self) -> Duration {
        self.config.heartbeat_timeout.max(Duration::from_millis(10))
    }

    /// Starts counting a try's worker's silence from `now` (once).
    fn watch_silence(&self, st: &mut State, name: &Arc<str>, now: Instant) {
        let Some(t) = st.tries.get_mut(name) else {
            return;
        };
        if t.alive_since.is_some() {
            return;
        }
        t.alive_since = Some(now);
        let at = now + self.heartbeat_timeout();
        t.silence_check = Some(at);
        st.timers.insert((at, Arc::clone(name)));
    }

    /// The Job exists: the try is pending (unless the watch saw its pod
    /// start already), its timers run.
    fn created(self: &Arc<Self>, name: &Arc<str>, note: &str) {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let Some(t) = st.tries.get_mut(name) else {
            return;
        };
        if t.phase == Phase::Finishing || t.started {
            return;
        }
        t.started = true;
        if t.phase == Phase::Creating {
            t.phase = Phase::Pending;
            let pending_until = now + self.config.pending_deadline;
            t.pending_until = Some(pending_until);
            st.timers.insert((pending_until, Arc::clone(name)));
        }
        if let Some(timeout) = t.timeout {
            let deadline = now + timeout + self.config.timeout_grace;
            t.deadline = Some(deadline);
            st.timers.insert((deadline, Arc::clone(name)));
        }
        t.events.send_now(ExecutorEvent::Started {
            key: t.key.clone(),
            handle: Some(format!("{}/{name}", t.namespace)),
        });
        t.events.send_now(ExecutorEvent::Log {
            key: t.key.clone(),
            stream: LogStream::System,
            line: format!("{note} Job {}/{name}", t.namespace),
        });
        let (cancel, adopted) = (t.cancel_requested, t.adopted);
        if adopted {
            // Its worker may have died with the previous process's watch.
            self.watch_silence(st, name, now);
        }
        if cancel {
            self.finalize(st, name, Cause::Cancelled);
        }
        let _ = self.commands.send(Command::Wake);
    }

    /// Hands a try to [`finish`], once.
    fn finalize(self: &Arc<Self>, st: &mut State, name: &Arc<str>, cause: Cause) {
        let Some(t) = st.tries.get_mut(name) else {
            return;
        };
        if t.phase == Phase::Finishing {
            return;
        }
        t.phase = Phase::Finishing;
        let finishing = Finishing {
            name: Arc::clone(name),
            namespace: Arc::clone(&t.namespace),
            key: t.key.clone(),
            try_ref: t.try_ref.clone(),
            events: t.events.clone(),
            timeout: t.timeout,
            waiting: t.waiting.as_deref().map(str::to_owned),
            watch_error: st
                .namespaces
                .get(&t.namespace)
                .and_then(|n| n.last_error.clone()),
            cause,
            log: Arc::clone(&t.log),
            follower: t.follower.take(),
        };
        if let Some(client) = self.client() {
            tokio::spawn(finish(Arc::clone(self), client, finishing));
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.lock().timers.first().map(|(at, _)| *at)
    }

    fn fire_timers(self: &Arc<Self>, now: Instant) {
        let mut st = self.lock();
        let st = &mut *st;
        while let Some((at, name)) = st.timers.first().cloned() {
            if at > now {
                break;
            }
            st.timers.pop_first();
            let Some(t) = st.tries.get(&name) else {
                continue;
            };
            if t.phase == Phase::Finishing {
                continue;
            }
            if t.deadline.is_some_and(|d| d <= now) {
                self.finalize(st, &name, Cause::TimedOut);
                continue;
            }
            if t.silence_check.is_some_and(|d| d <= now) {
                if let Some(silent_for) = self.silent(st, &name, now) {
                    self.finalize(st, &name, Cause::Lost(silent_for));
                    continue;
                }
            }
            let Some(t) = st.tries.get(&name) else {
                continue;
            };
            if matches!(t.phase, Phase::Pending) && t.pending_until.is_some_and(|d| d <= now) {
                self.finalize(st, &name, Cause::PendingDeadline);
            }
        }
    }

    /// How long the worker of a try has been silent, if longer than the
    /// heartbeat timeout while the watch knows no pod of its Job (it is
    /// lost); otherwise schedules the next check.
    fn silent(&self, st: &mut State, name: &Arc<str>, now: Instant) -> Option<Duration> {
        let timeout = self.heartbeat_timeout();
        let watch_works = {
            let t = st.tries.get(name)?;
            st.namespaces
                .get(&t.namespace)
                .is_some_and(|ns| ns.last_error.is_none())
        };
        let t = st.tries.get_mut(name)?;
        let since = t.alive_since?;
        let last = self
            .task_api
            .last_heartbeat(&t.try_ref)
            .map_or(since, |h| h.max(since));
        let silent_for = now.saturating_duration_since(last);
        let pod_known = t.pod.is_some() && watch_works;
        if silent_for >= timeout && !pod_known {
            return Some(silent_for);
        }
        // Silent with a pod that runs: look again later.
        let next = if silent_for >= timeout {
            now + timeout
        } else {
            last + timeout
        };
        if let Some(old) = t.silence_check.replace(next) {
            st.timers.remove(&(old, Arc::clone(name)));
        }
        st.timers.insert((next, Arc::clone(name)));
        None
    }

    fn on_item(self: &Arc<Self>, namespace: &Arc<str>, item: Item) {
        let mut st = self.lock();
        let st = &mut *st;
        match item {
            Item::Jobs(event) => match *event {
                Ok(event) => self.on_job_event(st, namespace, event),
                Err(e) => watch_failed(st, namespace, describe_watch(&e, "Jobs", namespace)),
            },
            Item::Pods(event) => match *event {
                Ok(event) => self.on_pod_event(st, namespace, event),
                Err(e) => watch_failed(st, namespace, describe_watch(&e, "pods", namespace)),
            },
        }
    }

    fn on_job_event(
        self: &Arc<Self>,
        st: &mut State,
        namespace: &Arc<str>,
        event: watcher::Event<Job>,
    ) {
        if let Some(ns) = st.namespaces.get_mut(namespace) {
            ns.last_error = None;
        }
        match event {
            watcher::Event::Init => {
                if let Some(ns) = st.namespaces.get_mut(namespace) {
                    ns.listing = Some(HashSet::new());
                }
            }
            watcher::Event::InitApply(job) => {
                if let (Some(ns), Some(name)) = (
                    st.namespaces.get_mut(namespace),
                    job.metadata.name.as_deref(),
                ) {
                    if let Some(listing) = &mut ns.listing {
                        if let Some((tracked, _)) = st.tries.get_key_value(name) {
                            listing.insert(Arc::clone(tracked));
                        }
                    }
                }
                self.on_job(st, &job);
            }
            watcher::Event::InitDone => {
                let seen = st
                    .namespaces
                    .get_mut(namespace)
                    .and_then(|ns| ns.listing.take())
                    .unwrap_or_default();
                // Jobs the re-list did not show may have been deleted while
                // the watch was down: check each.
                let missing: Vec<Arc<str>> = st
                    .tries
                    .iter()
                    .filter(|(name, t)| {
                        t.namespace == *namespace
                            && matches!(t.phase, Phase::Pending | Phase::Running)
                            && !seen.contains(*name)
                    })
                    .map(|(name, _)| Arc::clone(name))
                    .collect();
                if let (false, Some(client)) = (missing.is_empty(), self.client()) {
                    tokio::spawn(verify_exist(
                        Arc::clone(self),
                        client,
                        Arc::clone(namespace),
                        missing,
                    ));
                }
            }
            watcher::Event::Apply(job) => self.on_job(st, &job),
            watcher::Event::Delete(job) => {
                if let Some(name) = job.metadata.name.as_deref() {
                    if let Some((name, _)) = st.tries.get_key_value(name) {
                        let name = Arc::clone(name);
                        self.finalize(st, &name, Cause::Deleted);
                    }
                }
            }
        }
    }

    fn on_pod_event(
        self: &Arc<Self>,
        st: &mut State,
        namespace: &Arc<str>,
        event: watcher::Event<Pod>,
    ) {
        if let Some(ns) = st.namespaces.get_mut(namespace) {
            ns.last_error = None;
        }
        match event {
            watcher::Event::Init => {
                if let Some(ns) = st.namespaces.get_mut(namespace) {
                    ns.pod_listing = Some(HashSet::new());
                }
            }
            watcher::Event::InitApply(pod) => {
                let job = pod.metadata.labels.as_ref().and_then(|l| l.get(LABEL_JOB));
                if let (Some(ns), Some(job)) = (st.namespaces.get_mut(namespace), job) {
                    if let (Some(listing), Some((tracked, _))) =
                        (&mut ns.pod_listing, st.tries.get_key_value(job.as_str()))
                    {
                        listing.insert(Arc::clone(tracked));
                    }
                }
                self.on_pod(st, &pod);
            }
            watcher::Event::InitDone => {
                // Pods the re-list did not show are gone.
                let seen = st
                    .namespaces
                    .get_mut(namespace)
                    .and_then(|ns| ns.pod_listing.take())
                    .unwrap_or_default();
                for (name, t) in &mut st.tries {
                    if t.namespace == *namespace && !seen.contains(name) {
                        t.pod = None;
                    }
                }
            }
            watcher::Event::Apply(pod) => self.on_pod(st, &pod),
            // A pod deleted before its container ended makes its Job fail
            // (backoffLimit 0): the Job's event decides. Until it comes
            // (if it does), the try's pod is gone, and a silent worker
            // makes it lost.
            watcher::Event::Delete(pod) => {
                let job = pod.metadata.labels.as_ref().and_then(|l| l.get(LABEL_JOB));
                if let Some(t) = job.and_then(|job| st.tries.get_mut(job.as_str())) {
                    if t.pod.as_deref() == pod.metadata.name.as_deref() {
                        t.pod = None;
                    }
                }
            }
        }
    }

    fn on_job(self: &Arc<Self>, st: &mut State, job: &Job) {
        let Some(name) = job.metadata.name.as_deref() else {
            return;
        };
        let Some((name, t)) = st.tries.get_key_value(name) else {
            return;
        };
        if t.phase == Phase::Finishing {
            return;
        }
        let name = Arc::clone(name);
        if job.metadata.deletion_timestamp.is_some() {
            // goflow deletes only Jobs of tries it is finishing.
            self.finalize(st, &name, Cause::Deleted);
        } else if job_condition(job, "Complete").is_some()
            || job_condition(job, "Failed").is_some()
            || job_condition(job, "FailureTarget").is_some_and(|(r, _)| r == "DeadlineExceeded")
        {
            self.finalize(st, &name, Cause::Ended);
        }
    }

    fn on_pod(self: &Arc<Self>, st: &mut State, pod: &Pod) {
        let Some(job) = pod.metadata.labels.as_ref().and_then(|l| l.get(LABEL_JOB)) else {
            return;
        };
        let Some((name, t)) = st.tries.get_key_value(job.as_str()) else {
            return;
        };
        if t.phase == Phase::Finishing {
            return;
        }
        let name = Arc::clone(name);
        if let (Some(t), Some(pod_name)) = (st.tries.get_mut(&name), pod.metadata.name.as_deref()) {
            t.pod = Some(pod_name.into());
        }
        let status = pod.status.as_ref();
        let main = main_status(pod);
        let state = main.and_then(|s| s.state.as_ref());
        if state.is_some_and(|s| s.terminated.is_some()) {
            return self.finalize(st, &name, Cause::Ended);
        }
        if state.is_some_and(|s| s.running.is_some()) {
            let client = self.client();
            self.watch_silence(st, &name, Instant::now());
            if let Some(t) = st.tries.get_mut(&name) {
                if t.phase != Phase::Running {
                    // Where it runs, for the try's log: the first place
                    // people look when one node misbehaves.
                    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                    t.events.send_now(ExecutorEvent::Log {
                        key: t.key.clone(),
                        stream: LogStream::System,
                        line: format!(
                            "INFO pod {} of Job {name} running on node {}",
                            pod.metadata.name.as_deref().unwrap_or("?"),
                            node.unwrap_or("(unknown)")
                        ),
                    });
                }
                t.phase = Phase::Running;
                t.waiting = None;
                if let Some(at) = t.pending_until.take() {
                    st.timers.remove(&(at, Arc::clone(&name)));
                }
                let follow = self.config.follow_logs && t.follower.is_none();
                if let (true, Some(client), Some(pod_name)) =
                    (follow, client, pod.metadata.name.clone())
                {
                    let follower = pod_log::Follower {
                        shared: Arc::downgrade(self),
                        job: Arc::clone(&name),
                        pods: Api::namespaced(client, &t.namespace),
                        pod: pod_name,
                        limit_bytes: self.config.log_limit_bytes,
                        progress: Arc::clone(&t.log),
                        key: t.key.clone(),
                        events: t.events.clone(),
                    };
                    t.follower = Some(tokio::spawn(follower.run()));
                }
            }
            return;
        }
        let mut waiting = None;
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("Waiting");
            let text = match &w.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason.to_owned(),
            };
            if CANNOT_START.contains(&reason) {
                return self.finalize(st, &name, Cause::CannotStart(text));
            }
            if !STARTING.contains(&reason) {
                waiting = Some(text);
            }
        }
        for s in status
            .and_then(|s| s.init_container_statuses.as_deref())
            .unwrap_or_default()
        {
            if let Some(w) = s.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = w.reason.as_deref().unwrap_or("Waiting");
                if !STARTING.contains(&reason) {
                    waiting = Some(format!(
                        "init container {}: {reason}: {}",
                        s.name,
                        w.message.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        if let Some(c) = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        {
            waiting = Some(format!(
                "{}: {}",
                c.reason.as_deref().unwrap_or("NotScheduled"),
                c.message
                    .as_deref()
                    .unwrap_or("the pod cannot be scheduled")
            ));
        }
        if status.and_then(|s| s.phase.as_deref()) == Some("Failed") {
            return self.finalize(st, &name, Cause::Ended);
        }
        if let (Some(waiting), Some(t)) = (waiting, st.tries.get_mut(&name)) {
            t.waiting = Some(waiting.into_boxed_str());
        }
    }
}

/// What [`finish`] needs of a try.
struct Finishing {
    name: Arc<str>,
    namespace: Arc<str>,
    key: TryKey,
    try_ref: TryRef,
    events: EventSender,
    timeout: Option<Duration>,
    waiting: Option<String>,
    watch_error: Option<String>,
    cause: Cause,
    log: Arc<Mutex<pod_log::Progress>>,
    follower: Option<JoinHandle<()>>,
}

impl Finishing {
    fn log(&self, line: String) {
        self.events.send_now(ExecutorEvent::Log {
            key: self.key.clone(),
            stream: LogStream::System,
            line,
        });
    }
}

/// Records why a namespace's watch fails (until it works again).
fn watch_failed(st: &mut State, namespace: &Arc<str>, message: String) {
    tracing::warn!(namespace = %namespace, error = %message, "watching task Jobs failed; retrying");
    if let Some(ns) = st.namespaces.get_mut(namespace) {
        ns.last_error = Some(message);
    }
}

/// What the watch streams yield (boxed: Kubernetes objects are large
/// values).
enum Item {
    Jobs(Box<Result<watcher::Event<Job>, watcher::Error>>),
    Pods(Box<Result<watcher::Event<Pod>, watcher::Error>>),
}

/// The watch task: one Job watch and one pod watch per namespace, all
/// label-selected to this deployment's Jobs, and the timers. Ends when
/// the executor is dropped.
async fn drive(
    weak: Weak<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    client: kube::Client,
    selector: String,
) {
    let mut streams: SelectAll<BoxStream<'static, (Arc<str>, Item)>> = SelectAll::new();
    loop {
        let next_timer = match weak.upgrade() {
            Some(shared) => shared.next_timer(),
            None => break,
        };
        let timer = async move {
            match next_timer {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Watch(namespace)) => {
                    let config = watcher::Config::default().labels(&selector);
                    let ns = Arc::clone(&namespace);
                    let jobs = watcher(Api::<Job>::namespaced(client.clone(), &namespace), config.clone())
                        .default_backoff()
                        .map(move |e| (Arc::clone(&ns), Item::Jobs(Box::new(e))));
                    let ns = Arc::clone(&namespace);
                    let pods = watcher(Api::<Pod>::namespaced(client.clone(), &namespace), config)
                        .default_backoff()
                        .map(move |e| (Arc::clone(&ns), Item::Pods(Box::new(e))));
                    streams.push(jobs.boxed());
                    streams.push(pods.boxed());
                }
                Some(Command::Wake) => {}
            },
            Some((namespace, item)) = streams.next(), if !streams.is_empty() => {
                let Some(shared) = weak.upgrade() else { break };
                shared.on_item(&namespace, item);
            }
            () = timer => {
                let Some(shared) = weak.upgrade() else { break };
                shared.fire_timers(Instant::now());
            }
        }
    }
}

/// Launches a try: registers it with the task API, builds its Job, and
/// creates it (rate-limited) in the background.
pub(crate) fn launch(shared: &Arc<Shared>, launch: Launch, events: EventSender) {
    let key = launch.key.clone();
    let fail_now = |error: TaskError| {
        events.send_now(ExecutorEvent::Finished {
            key: key.clone(),
            result: Err(error),
            metrics: TryMetrics::default(),
        });
    };
    let client = match &shared.client {
        Ok(client) => client.clone(),
        Err(reason) => {
            return fail_now(TaskError::msg(format!(
                "the Kubernetes executor cannot run tasks: {reason}"
            )))
        }
    };
    let try_ref = TryRef::of(&launch);
    let namespace = namespace_of(&launch, &shared.config).to_owned();
    let name: Arc<str> = Arc::from(job_name_of(&launch, &shared.config));
    let token = match shared.task_api.register(
        try_ref.clone(),
        key.clone(),
        &launch_payload(&launch),
        events.clone(),
    ) {
        Ok(token) => token,
        Err(e) => {
            return fail_now(TaskError::msg(format!(
                "cannot encode the launch payload: {e}"
            )))
        }
    };
    let job = match job_manifest(
        &launch,
        JobParams {
            config: &shared.config,
            token: &token,
        },
    ) {
        Ok(job) => job,
        Err(e) => {
            shared.task_api.unregister(&try_ref);
            // A setting that is wrong stays wrong: retrying cannot help.
            return fail_now(TaskError::fatal(e.to_string()));
        }
    };
    if !shared.track(&name, &namespace, &launch, events.clone(), 0, false) {
        return fail_now(TaskError::msg(format!(
            "this try is already running as Job {namespace}/{name}"
        )));
    }
    tokio::spawn(create(Arc::clone(shared), client, namespace, name, job));
}

async fn create(
    shared: Arc<Shared>,
    client: kube::Client,
    namespace: String,
    name: Arc<str>,
    job: Job,
) {
    // At most one live Job per task instance: those of older tries that
    // still run go first.
    if let Err(message) = delete_older_tries(&shared, &client, &namespace, &name, &job).await {
        return shared.fail(&name, TaskError::msg(message));
    }
    if shared.cancel_requested(&name) {
        return shared.fail(
            &name,
            TaskError::msg("cancelled: the try was stopped before its Job was created"),
        );
    }
    shared.limiter.until_ready().await;
    let jobs: Api<Job> = Api::namespaced(client, &namespace);
    let action = format!("create Job {namespace}/{name}");
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => shared.created(&name, "created"),
        Err(kube::Error::Api(e)) if e.code == 409 => match jobs.get(&name).await {
            Ok(existing) if same_try(&existing, &job) => shared.created(
                &name,
                "a Job for this try existed already (an earlier launch or another scheduler \
                 created it); following",
            ),
            Ok(_) => shared.fail(
                &name,
                TaskError::msg(format!(
                    "cannot {action}: a Job of that name exists and is not this try's"
                )),
            ),
            Err(e) => shared.fail(&name, TaskError::msg(describe(&e, &action, &namespace))),
        },
        Err(e) => shared.fail(&name, TaskError::msg(describe(&e, &action, &namespace))),
    }
}

/// The exact (dag, run, task, try) of a Job, from its annotations.
fn try_ids(job: &Job) -> [Option<String>; 4] {
    let annotations = job.metadata.annotations.as_ref();
    [
        ANNOTATION_DAG,
        ANNOTATION_RUN,
        ANNOTATION_TASK,
        ANNOTATION_TRY,
    ]
    .map(|k| annotations.and_then(|a| a.get(k)).cloned())
}

fn same_try(a: &Job, b: &Job) -> bool {
    try_ids(a) == try_ids(b)
}

/// Before the Job `name` of try N (`job`) is created: finds the Jobs of
/// tries before N of the same task instance that have not finished (a
/// scheduler that stopped left them running, or a try was not followed to
/// its end), deletes them in the foreground (their pods go first), and
/// waits for them to be gone, up to [`SUPERSEDE_WAIT`]. An error (the
/// list or a delete refused) says why the try must not start.
async fn delete_older_tries(
    shared: &Arc<Shared>,
    client: &kube::Client,
    namespace: &str,
    name: &str,
    job: &Job,
) -> Result<(), String> {
    let [Some(dag), Some(run), Some(task), Some(try_number)] = try_ids(job) else {
        return Ok(());
    };
    let Ok(try_number) = try_number.parse::<u32>() else {
        return Ok(());
    };
    if try_number <= 1 {
        // Try numbers only grow (also across clearing): no older try.
        return Ok(());
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let selector = task_instance_selector(&shared.config.instance, &dag, &run, &task);
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            format!(
                "{}; try {try_number} is not started, so that it never runs beside an earlier \
                 try",
                describe(
                    &e,
                    &format!("list the Jobs of earlier tries of task {task}"),
                    namespace
                )
            )
        })?;
    let mut older: Vec<(String, u32)> = list
        .items
        .iter()
        .filter_map(|other| {
            let [d, r, t, n] = try_ids(other);
            let n = n?.parse::<u32>().ok()?;
            let same_instance = d.as_deref() == Some(&dag)
                && r.as_deref() == Some(&run)
                && t.as_deref() == Some(&task);
            // A finished Job (kept by --k8s-keep-jobs until its TTL) runs
            // nothing.
            let finished = job_condition(other, "Complete").is_some()
                || job_condition(other, "Failed").is_some();
            (same_instance && n < try_number && !finished)
                .then(|| Some((other.metadata.name.clone()?, n)))
                .flatten()
        })
        .collect();
    older.sort_by_key(|(_, n)| *n);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    for (old, n) in &older {
        // Followed here still (not by the scheduler's choice): it ends.
        shared.supersede(old, try_number);
        match jobs.delete(old, &params).await {
            Ok(_) => shared.note(
                name,
                format!(
                    "deleted Job {namespace}/{old} of try {n} of this task, which had not \
                     finished (foreground: its pods go first)"
                ),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(format!(
                    "{}; try {try_number} is not started while try {n} may still run",
                    describe(&e, &format!("delete Job {namespace}/{old}"), namespace)
                ))
            }
        }
    }
    let until = Instant::now() + SUPERSEDE_WAIT;
    for (old, n) in &older {
        loop {
            if shared.cancel_requested(name) {
                return Ok(());
            }
            match jobs.get_opt(old).await {
                Ok(None) => break,
                Ok(Some(_)) if Instant::now() < until => tokio::time::sleep(SUPERSEDE_POLL).await,
                Ok(Some(_)) => {
                    shared.note(
                        name,
                        format!(
                            "Job {namespace}/{old} of try {n} is still being deleted after {}; \
                             starting try {try_number} anyway",
                            whole(SUPERSEDE_WAIT)
                        ),
                    );
                    break;
                }
                Err(e) => {
                    shared.note(
                        name,
                        describe(&e, &format!("read Job {namespace}/{old}"), namespace),
                    );
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Stops a try: its Job is deleted (after its log is copied).
pub(crate) fn cancel(shared: &Arc<Shared>, key: &TryKey) {
    let mut st = shared.lock();
    let st = &mut *st;
    let Some(name) = st.by_key.get(key).cloned() else {
        return;
    };
    let Some(t) = st.tries.get_mut(&name) else {
        return;
    };
    match t.phase {
        Phase::Finishing => {}
        // The create call is in flight: cancel once it is answered.
        _ if !t.started => t.cancel_requested = true,
        Phase::Creating | Phase::Pending | Phase::Running => {
            shared.finalize(st, &name, Cause::Cancelled)
        }
    }
}

/// Takes over a try launched by an earlier process: follows its Job if it
/// exists, else fails the try as lost.
pub(crate) fn adopt(
    shared: &Arc<Shared>,
    launch: Launch,
    previous: &Adoption,
    events: EventSender,
) -> bool {
    let Ok(client) = &shared.client else {
        return false;
    };
    let (namespace, name) = match previous.handle.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            (ns.to_owned(), name.to_owned())
        }
        _ => (
            namespace_of(&launch, &shared.config).to_owned(),
            job_name_of(&launch, &shared.config),
        ),
    };
    let name: Arc<str> = Arc::from(name);
    let try_ref = TryRef::of(&launch);
    let key = launch.key.clone();
    if shared
        .task_api
        .register(
            try_ref.clone(),
            key.clone(),
            &launch_payload(&launch),
            events.clone(),
        )
        .is_err()
    {
        return false;
    }
    if !shared.track(
        &name,
        &namespace,
        &launch,
        events,
        previous.logged_lines,
        true,
    ) {
        // Followed already.
        return true;
    }
    let shared = Arc::clone(shared);
    let client = client.clone();
    tokio::spawn(async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        match jobs.get_opt(&name).await {
            Ok(Some(job)) => {
                shared.created(&name, "adopted (after a scheduler restart)");
                // The namespace's watch may have listed it already: look at
                // the Job and its pod now.
                let pods: Api<Pod> = Api::namespaced(client, &namespace);
                let pod_list = pods
                    .list(&ListParams::default().labels(&format!("{LABEL_JOB}={name}")))
                    .await;
                let mut st = shared.lock();
                shared.on_job(&mut st, &job);
                if let Ok(list) = pod_list {
                    if let Some(pod) = newest(list.items) {
                        shared.on_pod(&mut st, &pod);
                    }
                }
            }
            Ok(None) => match shared.task_api.result(&try_ref) {
                // Its worker reported to this process before the Job went.
                Some(posted) => {
                    shared.note(
                        &name,
                        format!(
                            "Job {namespace}/{name} no longer exists, but its worker reported \
                             its result"
                        ),
                    );
                    let metrics = posted
                        .metrics
                        .map(|m| TryMetrics {
                            peak_memory_bytes: m.peak_memory_bytes,
                            cpu_user_ms: m.cpu_user_ms,
                            cpu_system_ms: m.cpu_system_ms,
                            ..TryMetrics::default()
                        })
                        .unwrap_or_default();
                    shared.end(&name, posted.outcome.into_result(), metrics);
                }
                None => {
                    let message = format!(
                        "lost: its Job {namespace}/{name} no longer exists and its worker \
                         reported no result (the Job was deleted, or removed by its TTL, while \
                         no scheduler followed it)"
                    );
                    shared.note(&name, message.clone());
                    shared.fail(&name, TaskError::msg(message));
                }
            },
            Err(e) => shared.fail(
                &name,
                TaskError::msg(describe(
                    &e,
                    &format!("get Job {namespace}/{name}"),
                    &namespace,
                )),
            ),
        }
    });
    true
}

/// After a re-list: Jobs not listed that do not exist were deleted.
async fn verify_exist(
    shared: Arc<Shared>,
    client: kube::Client,
    namespace: Arc<str>,
    names: Vec<Arc<str>>,
) {
    let jobs: Api<Job> = Api::namespaced(client, &namespace);
    for name in names {
        if let Ok(None) = jobs.get_opt(&name).await {
            let mut st = shared.lock();
            shared.finalize(&mut st, &name, Cause::Deleted);
        }
    }
}

/// Finishes a try: reads its Job and pod, copies the pod's log, decides
/// the result, deletes the Job when it should go, and reports.
async fn finish(shared: Arc<Shared>, client: kube::Client, mut f: Finishing) {
    // The follower stops before the final copy, which sends what it has
    // not: the rest of the log, once.
    if let Some(follower) = f.follower.take() {
        follower.abort();
        let _ = follower.await;
    }
    let ns = &*f.namespace;
    let name = &*f.name;
    match &f.cause {
        Cause::Cancelled => f.log(format!(
            "cancelled: deleting Job {ns}/{name} and its pod (foreground)"
        )),
        Cause::Superseded(by) => f.log(format!(
            "try {by} of this task started: deleting Job {ns}/{name} and its pod (foreground)"
        )),
        Cause::Lost(silent_for) => f.log(lost_message(
            ns,
            name,
            *silent_for,
            shared.config.heartbeat_timeout,
        )),
        _ => {}
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let job = match f.cause {
        Cause::Deleted => None,
        _ => match jobs.get_opt(name).await {
            Ok(job) => job,
            Err(e) => {
                f.log(describe(&e, &format!("read Job {ns}/{name}"), ns));
                None
            }
        },
    };
    let pod = match pods
        .list(&ListParams::default().labels(&format!("{LABEL_JOB}={name}")))
        .await
    {
        Ok(list) => newest(list.items),
        Err(e) => {
            f.log(describe(
                &e,
                &format!("list the pods of Job {ns}/{name}"),
                ns,
            ));
            None
        }
    };
    let main = pod.as_ref().and_then(main_status);
    let started = main.is_some_and(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });

    let mut last_line = None;
    match (&pod, started) {
        (Some(pod), true) => {
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            let params = LogParams {
                container: Some(CONTAINER.to_owned()),
                limit_bytes: Some(shared.config.log_limit_bytes),
                ..LogParams::default()
            };
            match pods.logs(pod_name, &params).await {
                Ok(text) => {
                    pod_log::complete(&f.log, &text, &f.key, &f.events);
                    last_line = text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_owned);
                    if i64::try_from(text.len()).is_ok_and(|n| n >= shared.config.log_limit_bytes) {
                        f.log(format!(
                            "the log of pod {ns}/{pod_name} was cut at {} bytes",
                            shared.config.log_limit_bytes
                        ));
                    }
                }
                Err(e) => f.log(format!(
                    "the task's log was not copied: {}",
                    describe(&e, &format!("read the log of pod {ns}/{pod_name}"), ns)
                )),
            }
        }
        (Some(pod), false) => f.log(format!(
            "no log to copy: the task container of pod {ns}/{} never started",
            pod.metadata.name.as_deref().unwrap_or_default()
        )),
        (None, _) => f.log(format!(
            "no log to copy: no pod of Job {ns}/{name} exists (any more)"
        )),
    }

    let posted = shared.task_api.unregister(&f.try_ref);
    let (result, metrics) = decide(
        &f,
        &shared.config,
        job.as_ref(),
        pod.as_ref(),
        posted,
        last_line,
    );

    // A Job goflow stops goes in the foreground: its pods first, so that
    // no worker of it outlives the try's end for long.
    let delete = match f.cause {
        Cause::Cancelled
        | Cause::Superseded(_)
        | Cause::TimedOut
        | Cause::PendingDeadline
        | Cause::CannotStart(_)
        | Cause::Lost(_) => Some(PropagationPolicy::Foreground),
        Cause::Deleted => None,
        Cause::Ended => shared
            .config
            .delete_finished_jobs
            .then(|| shared.config.propagation.policy()),
    };
    if let Some(policy) = delete {
        let params = DeleteParams {
            propagation_policy: Some(policy),
            ..DeleteParams::default()
        };
        match jobs.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                let message = describe(&e, &format!("delete Job {ns}/{name}"), ns);
                tracing::warn!(error = %message, "cannot delete a task's Job");
                f.log(format!("{message}; its TTL will remove it"));
            }
        }
    }
    shared.untrack(&f.name);
    f.events.send_now(ExecutorEvent::Finished {
        key: f.key,
        result,
        metrics,
    });
}

/// The try's result from what Kubernetes and the worker say.
fn decide(
    f: &Finishing,
    config: &KubernetesConfig,
    job: Option<&Job>,
    pod: Option<&Pod>,
    posted: Option<WorkerResult>,
    last_line: Option<String>,
) -> (Result<TaskOutput, TaskError>, TryMetrics) {
    let terminated = pod
        .and_then(main_status)
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    // Without a posted result, the worker's fallback: its result as the
    // last line of its output.
    let posted = posted.or_else(|| last_line.and_then(|l| serde_json::from_str(l.trim()).ok()));
    let reserved = resources::reserved(pod, job);
    let mut metrics = TryMetrics {
        exit_code: terminated.map(|t| t.exit_code),
        cpu_request_millis: reserved.cpu_request_millis,
        memory_request_bytes: reserved.memory_request_bytes,
        cpu_limit_millis: reserved.cpu_limit_millis,
        memory_limit_bytes: reserved.memory_limit_bytes,
        ..TryMetrics::default()
    };
    if let Some(m) = posted.as_ref().and_then(|r| r.metrics) {
        metrics.peak_memory_bytes = m.peak_memory_bytes;
        metrics.cpu_user_ms = m.cpu_user_ms;
        metrics.cpu_system_ms = m.cpu_system_ms;
    }
    let (ns, name) = (&f.namespace, &f.name);
    let result = match &f.cause {
        Cause::Cancelled => Err(TaskError::msg(format!(
            "cancelled: the try was stopped, and its Job {ns}/{name} deleted with its pod"
        ))),
        Cause::Superseded(by) => Err(TaskError::msg(format!(
            "cancelled: try {by} of this task started, so this try's Job {ns}/{name} was \
             deleted with its pod"
        ))),
        Cause::Lost(silent_for) if terminated.is_none() => Err(TaskError::msg(lost_message(
            ns,
            name,
            *silent_for,
            config.heartbeat_timeout,
        ))),
        Cause::TimedOut => Err(TaskError::timed_out(f.timeout.unwrap_or_default())),
        Cause::CannotStart(reason) => Err(TaskError::msg(format!(
            "the pod of Job {ns}/{name} cannot start: {reason}"
        ))),
        Cause::PendingDeadline if terminated.is_none() => {
            let why = f.waiting.clone().unwrap_or_else(|| match pod {
                Some(_) => "its task container is still waiting".to_owned(),
                None => format!("no pod was created for Job {ns}/{name}"),
            });
            let watch = f
                .watch_error
                .as_ref()
                .map(|e| format!("; and watching the namespace fails: {e}"))
                .unwrap_or_default();
            Err(TaskError::msg(format!(
                "the task's pod did not start within {}: {why}{watch}",
                whole(config.pending_deadline)
            )))
        }
        Cause::Deleted if terminated.is_none() => Err(TaskError::msg(format!(
            "Job {ns}/{name} was deleted by someone else (not goflow) before the try finished"
        ))),
        _ => {
            if let Some(limit) = job.and_then(deadline_exceeded) {
                Err(TaskError::timed_out(f.timeout.unwrap_or(limit)))
            } else if let Some(t) = terminated {
                from_exit(t, posted)
            } else if let Some((reason, message)) = job.and_then(|j| job_condition(j, "Failed")) {
                match posted.map(|r| r.outcome.into_result()) {
                    Some(Err(e)) => Err(e),
                    _ => Err(TaskError::msg(format!(
                        "Job {ns}/{name} failed: {reason}: {message}"
                    ))),
                }
            } else if job.and_then(|j| job_condition(j, "Complete")).is_some() {
                match posted {
                    Some(r) => r.outcome.into_result(),
                    None => Err(TaskError::msg(format!(
                        "Job {ns}/{name} completed, but its pod is gone and the task reported no result"
                    ))),
                }
            } else if let Some(status) = pod.and_then(|p| p.status.as_ref()) {
                Err(TaskError::msg(format!(
                    "the pod of Job {ns}/{name} failed: {}: {}",
                    status.reason.as_deref().unwrap_or("Failed"),
                    status.message.as_deref().unwrap_or("no message")
                )))
            } else {
                Err(TaskError::msg(format!(
                    "Job {ns}/{name} and its pod are gone: the try's end was not seen"
                )))
            }
        }
    };
    (result, metrics)
}

/// Why a silent try is ended.
fn lost_message(ns: &str, name: &str, silent_for: Duration, timeout: Duration) -> String {
    format!(
        "lost: the worker stopped heartbeating to the task API (silent for {}, more than the \
         heartbeat timeout of {}) and the pod of Job {ns}/{name} was gone (or unknown to the \
         watch); the Job is deleted",
        whole(Duration::from_secs(silent_for.as_secs().max(1))),
        whole(timeout)
    )
}

/// `90s`, `5m`, `1h`, as durations are written in options.
fn whole(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The result of a try whose task container terminated.
fn from_exit(
    t: &ContainerStateTerminated,
    posted: Option<WorkerResult>,
) -> Result<TaskOutput, TaskError> {
    let code = t.exit_code;
    let reason = match t.reason.as_deref() {
        Some("OOMKilled") => {
            " (OOMKilled: the container ran out of memory; raise the task's `memory_limit`)"
                .to_owned()
        }
        Some(r) if r != "Completed" && r != "Error" => format!(" ({r})"),
        _ => String::new(),
    };
    match (code, posted) {
        (0, Some(r)) => r.outcome.into_result(),
        (0, None) => Err(TaskError::msg(
            "the task container exited with code 0 without reporting a result to the task API \
             or printing one: is the image built from this binary, and does the advertise URL \
             reach the scheduler from the pod?",
        )),
        (_, Some(r)) => match r.outcome.into_result() {
            Err(e) => Err(e),
            Ok(_) => Err(TaskError::msg(format!(
                "the task reported success, but its container exited with code {code}{reason}"
            ))),
        },
        (_, None) => {
            let tail = t
                .message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(|m| {
                    let m: String = m
                        .chars()
                        .rev()
                        .take(600)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    format!(": {m}")
                })
                .unwrap_or_default();
            Err(TaskError::msg(format!(
                "the task container exited with code {code}{reason}{tail}"
            )))
        }
    }
}

/// The status of the task container.
fn main_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == CONTAINER)
}

/// The pod created last (a Job with backoffLimit 0 has one, but a pod
/// deleted by hand may have been replaced).
fn newest(pods: Vec<Pod>) -> Option<Pod> {
    pods.into_iter().max_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    })
}

/// `(reason, message)` of a Job condition of type `kind` that is true.
fn job_condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// The Job's `activeDeadlineSeconds` if it ended because of it.
fn deadline_exceeded(job: &Job) -> Option<Duration> {
    let hit = ["Failed", "FailureTarget"].iter().any(|kind| {
        job_condition(job, kind).is_some_and(|(reason, _)| reason == "DeadlineExceeded")
    });
    hit.then(|| {
        let secs = job
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .unwrap_or_default();
        Duration::from_secs(u64::try_from(secs).unwrap_or_default())
    })
}
