//! Ordered start-up with automatic reverse undo (see [`Stages`]).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pool::{Pool, PoolBuilder, Straggler};
use crate::record::ThreadId;
use crate::sync::panic_message;
use crate::thread::{Stopper, Thread};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;
type Undo = Box<dyn FnOnce(Option<Instant>) -> UndoOutcome + Send>;

/// How undoing one stage went.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UndoOutcome {
    /// Undone.
    Done,
    /// The undo panicked (contained; the other stages were still undone).
    Panicked(String),
    /// A thread stage whose thread did not stop in time (detached).
    ThreadStraggler(ThreadId),
    /// A pool stage whose shutdown left stragglers (detached, reported).
    PoolStragglers(Vec<Straggler>),
}

impl UndoOutcome {
    /// Whether the stage was undone cleanly.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(threadward::UndoOutcome::Done.is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        matches!(self, UndoOutcome::Done)
    }
}

impl fmt::Display for UndoOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UndoOutcome::Done => f.write_str("undone"),
            UndoOutcome::Panicked(m) => write!(f, "undo panicked: {m}"),
            UndoOutcome::ThreadStraggler(id) => write!(f, "thread {id} did not stop in time"),
            UndoOutcome::PoolStragglers(s) => write!(f, "{} pool straggler(s)", s.len()),
        }
    }
}

/// One undone stage.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UndoneStage {
    /// The stage's name.
    pub name: String,
    /// How its undo went.
    pub outcome: UndoOutcome,
    /// How long its undo took.
    pub took: Duration,
}

/// What [`Stages::shutdown`] (or a failed start) undid, in undo order.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StagesReport {
    /// Stages undone, last started first.
    pub undone: Vec<UndoneStage>,
}

impl StagesReport {
    /// Whether every stage was undone cleanly.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("svc");
    /// s.start("a", || Ok::<_, std::io::Error>(((), || {}))).unwrap();
    /// assert!(s.shutdown(std::time::Duration::from_secs(1)).is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.undone.iter().all(|u| u.outcome.is_clean())
    }
}

impl fmt::Display for StagesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, u) in self.undone.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{:<24} {:<28} {:>10.1?}",
                u.name,
                u.outcome.to_string(),
                u.took
            )?;
        }
        Ok(())
    }
}

/// A required stage failed: it names the stage, carries the cause, and
/// reports the undo of the stages started before it.
#[derive(Debug, thiserror::Error)]
#[error("stage {stage:?} of {group:?} failed")]
pub struct StageError {
    /// The group's name (from [`Stages::new`]).
    pub group: String,
    /// The failed stage.
    pub stage: String,
    /// Why it failed (a panic becomes an error with its message).
    #[source]
    pub cause: BoxError,
    /// The undo of every stage started before it, in reverse order.
    pub undo: StagesReport,
}

/// An optional stage that failed; the group runs on without it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Degraded {
    /// The stage's name.
    pub stage: String,
    /// Why it failed.
    pub cause: String,
}

#[derive(Debug, thiserror::Error)]
#[error("panicked: {0}")]
struct InitPanicked(String);

struct Entry {
    name: String,
    undo: Undo,
}

/// Ordered start-up with automatic reverse undo: init/exit without goto
/// ladders.
///
/// A [`Stages`] value is a stack of started stages. [`Stages::start`] runs a
/// stage's init; if it succeeds, its undo is pushed; if it fails (or
/// panics), every stage already started is undone, in reverse order, once
/// each, and the error names the failed stage. [`Stages::shutdown`] (and
/// `Drop`) undoes everything in reverse and reports per stage. Optional
/// stages ([`Stages::start_optional`]) that fail are logged as degraded and
/// skipped, like XPC's reboot and die notifiers.
///
/// Each init returns the value the caller wants *and* the undo that owns
/// what teardown needs, so values flow to later stages naturally:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use threadward::{Pool, Stages};
///
/// let mut stages = Stages::new("xpc");
/// let table = stages.start("partition-table", || {
///     let table = Arc::new(vec![0u64; 8]);
///     Ok::<_, std::io::Error>((table, || { /* hand the page back */ }))
/// })?;
/// let beats = table.clone();
/// let _hb = stages.thread("heartbeat", Duration::from_secs(1), move || {
///     threadward::spawn("heartbeat", move |cx| {
///         while cx.sleep(Duration::from_millis(1)).is_ok() {
///             let _ = beats.len();
///         }
///     })
/// })?;
/// let pool = stages.pool("deliver", Duration::from_secs(1), Pool::builder().name("deliver"))?;
/// pool.spawn(|_| ()).unwrap().join().unwrap();
/// let report = stages.shutdown(Duration::from_secs(5));
/// assert_eq!(report.undone.len(), 3);
/// assert_eq!(report.undone[0].name, "deliver"); // reverse order
/// # Ok::<(), threadward::StageError>(())
/// ```
#[must_use = "dropping Stages undoes every stage at once; keep it for the service's lifetime"]
pub struct Stages {
    name: String,
    started: Vec<Entry>,
    degraded: Vec<Degraded>,
    drop_deadline: Duration,
}

impl Stages {
    /// An empty group named `name` (used in logs and errors).
    ///
    /// # Examples
    ///
    /// ```
    /// let stages = threadward::Stages::new("xpc");
    /// assert_eq!(stages.len(), 0);
    /// ```
    pub fn new(name: impl Into<String>) -> Stages {
        Stages {
            name: name.into(),
            started: Vec::new(),
            degraded: Vec::new(),
            drop_deadline: Duration::from_secs(5),
        }
    }

    /// Sets the deadline of the shutdown that dropping the group performs
    /// (default 5 s).
    ///
    /// # Examples
    ///
    /// ```
    /// let stages = threadward::Stages::new("svc").drop_deadline(std::time::Duration::from_secs(1));
    /// # drop(stages);
    /// ```
    pub fn drop_deadline(mut self, d: Duration) -> Stages {
        self.drop_deadline = d;
        self
    }

    /// Number of stages started and not yet undone.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("svc");
    /// s.start("a", || Ok::<_, std::io::Error>(((), || {}))).unwrap();
    /// assert_eq!(s.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.started.len()
    }

    /// Whether no stage is started.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(threadward::Stages::new("svc").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }

    /// Names of the started stages, in start order.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("svc");
    /// s.start("a", || Ok::<_, std::io::Error>(((), || {}))).unwrap();
    /// assert_eq!(s.started(), vec!["a"]);
    /// ```
    pub fn started(&self) -> Vec<&str> {
        self.started.iter().map(|e| e.name.as_str()).collect()
    }

    /// Optional stages that failed, in order.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("svc");
    /// let r = s.start_optional("notifier", || Err::<((), fn()), _>(std::io::Error::other("busy")));
    /// assert!(r.is_none());
    /// assert_eq!(s.degraded()[0].stage, "notifier");
    /// ```
    pub fn degraded(&self) -> &[Degraded] {
        &self.degraded
    }

    fn run_init<T, U, E>(init: impl FnOnce() -> Result<(T, U), E>) -> Result<(T, U), BoxError>
    where
        E: Into<BoxError>,
    {
        match catch_unwind(AssertUnwindSafe(init)) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.into()),
            Err(p) => {
                let message = panic_message(&*p);
                crate::sync::drop_payload(p); // it may panic on drop too
                Err(Box::new(InitPanicked(message)))
            }
        }
    }

    fn push_plain(&mut self, name: &str, undo: impl FnOnce() + Send + 'static) {
        self.push(
            name,
            Box::new(move |_| {
                undo();
                UndoOutcome::Done
            }),
        );
    }

    fn push(&mut self, name: &str, undo: Undo) {
        tracing::debug!(group = %self.name, stage = %name, "stage started");
        self.started.push(Entry {
            name: name.to_owned(),
            undo,
        });
    }

    /// Starts a required stage. `init` returns the value for the caller and
    /// the undo closure, which owns whatever teardown needs.
    ///
    /// # Errors
    ///
    /// If `init` fails or panics, every stage started before it is undone
    /// (reverse order, once each) and a [`StageError`] naming this stage is
    /// returned. The group stays usable (and empty).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let mut s = threadward::Stages::new("svc");
    /// for name in ["a", "b"] {
    ///     let l = log.clone();
    ///     s.start(name, move || Ok::<_, std::io::Error>(((), move || l.lock().unwrap().push(name))))
    ///         .unwrap();
    /// }
    /// let err = s.start("c", || Err::<((), fn()), _>(std::io::Error::other("no device"))).unwrap_err();
    /// assert_eq!(err.stage, "c");
    /// assert_eq!(*log.lock().unwrap(), vec!["b", "a"]);
    /// ```
    pub fn start<T, U, E>(
        &mut self,
        name: &str,
        init: impl FnOnce() -> Result<(T, U), E>,
    ) -> Result<T, StageError>
    where
        U: FnOnce() + Send + 'static,
        E: Into<BoxError>,
    {
        match self.try_start(name, init) {
            Ok(value) => Ok(value),
            Err(cause) => Err(self.fail(name, cause)),
        }
    }

    /// Starts a required stage that has nothing to undo (a configuration
    /// read, a check): `init` returns just the value. It is recorded like
    /// any stage (in [`started`](Stages::started), in order), and its undo
    /// does nothing.
    ///
    /// # Errors
    ///
    /// As [`start`](Stages::start).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("svc");
    /// let port: u16 = s.start_no_undo("config", || "7878".parse()).unwrap();
    /// assert_eq!(port, 7878);
    /// assert_eq!(s.started(), ["config"]);
    /// ```
    pub fn start_no_undo<T, E>(
        &mut self,
        name: &str,
        init: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, StageError>
    where
        E: Into<BoxError>,
    {
        self.start(name, || init().map(|v| (v, || {})))
    }

    /// Runs `init`; on success records its undo and returns the value.
    fn try_start<T, U, E>(
        &mut self,
        name: &str,
        init: impl FnOnce() -> Result<(T, U), E>,
    ) -> Result<T, BoxError>
    where
        U: FnOnce() + Send + 'static,
        E: Into<BoxError>,
    {
        let (value, undo) = Self::run_init(init)?;
        self.push_plain(name, undo);
        Ok(value)
    }

    fn fail(&mut self, name: &str, cause: BoxError) -> StageError {
        tracing::error!(group = %self.name, stage = %name, error = %cause, "stage failed; undoing the started stages");
        let undo = self.undo_all(None);
        StageError {
            group: self.name.clone(),
            stage: name.to_owned(),
            cause,
            undo,
        }
    }

    /// Starts an optional stage: on failure (or panic) logs a warning that
    /// the group runs degraded, records it, and returns `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("xpc");
    /// let got = s.start_optional("reboot-notifier", || Ok::<_, std::io::Error>((7, || {})));
    /// assert_eq!(got, Some(7));
    /// ```
    pub fn start_optional<T, U, E>(
        &mut self,
        name: &str,
        init: impl FnOnce() -> Result<(T, U), E>,
    ) -> Option<T>
    where
        U: FnOnce() + Send + 'static,
        E: Into<BoxError>,
    {
        match self.try_start(name, init) {
            Ok(value) => Some(value),
            Err(cause) => {
                tracing::warn!(group = %self.name, stage = %name, error = %cause,
                    "optional stage failed; continuing degraded without it");
                self.degraded.push(Degraded {
                    stage: name.to_owned(),
                    cause: cause.to_string(),
                });
                None
            }
        }
    }

    /// Starts a managed thread as a stage; its undo stops it, waiting at
    /// most `deadline` (then it is detached and reported).
    ///
    /// # Errors
    ///
    /// As [`start`](Stages::start), with the spawn's `io::Error` as cause.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut s = threadward::Stages::new("svc");
    /// let stopper = s
    ///     .thread("ticker", Duration::from_secs(1), || {
    ///         threadward::spawn("ticker", |cx| cx.sleep(Duration::from_secs(3600)))
    ///     })
    ///     .unwrap();
    /// assert!(!stopper.is_finished());
    /// s.shutdown(Duration::from_secs(5));
    /// assert!(stopper.is_finished());
    /// ```
    pub fn thread<R: Send + 'static>(
        &mut self,
        name: &str,
        deadline: Duration,
        spawn: impl FnOnce() -> io::Result<Thread<R>>,
    ) -> Result<Stopper, StageError> {
        match Self::run_init(|| spawn().map(|t| ((), t))) {
            Ok(((), t)) => {
                let stopper = t.stopper();
                self.push(
                    name,
                    Box::new(move |end| {
                        let left = clamp(deadline, end);
                        match t.stop_timeout(left) {
                            Ok(_) => UndoOutcome::Done,
                            Err(t) => {
                                let id = t.id();
                                tracing::warn!(thread = %t.name(), %id, "stage thread did not stop in time; detached");
                                t.detach();
                                UndoOutcome::ThreadStraggler(id)
                            }
                        }
                    }),
                );
                Ok(stopper)
            }
            Err(cause) => Err(self.fail(name, cause)),
        }
    }

    /// Builds a pool as a stage; its undo shuts the pool down within
    /// `deadline` and reports stragglers.
    ///
    /// # Errors
    ///
    /// As [`start`](Stages::start), with the build's `io::Error` as cause.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut s = threadward::Stages::new("svc");
    /// let pool = s.pool("workers", Duration::from_secs(1), threadward::Pool::builder()).unwrap();
    /// assert_eq!(pool.spawn(|_| 3).unwrap().join(), Ok(3));
    /// let report = s.shutdown(Duration::from_secs(5));
    /// assert!(report.is_clean());
    /// ```
    pub fn pool(
        &mut self,
        name: &str,
        deadline: Duration,
        builder: PoolBuilder,
    ) -> Result<Arc<Pool>, StageError> {
        match Self::run_init(|| builder.build().map(|p| ((), Arc::new(p)))) {
            Ok(((), pool)) => {
                let p = pool.clone();
                self.push(
                    name,
                    Box::new(move |end| {
                        let report = p.shutdown(clamp(deadline, end));
                        if report.stragglers.is_empty() {
                            UndoOutcome::Done
                        } else {
                            UndoOutcome::PoolStragglers(report.stragglers)
                        }
                    }),
                );
                Ok(pool)
            }
            Err(cause) => Err(self.fail(name, cause)),
        }
    }

    fn undo_all(&mut self, end: Option<Instant>) -> StagesReport {
        let mut report = StagesReport::default();
        while let Some(Entry { name, undo }) = self.started.pop() {
            let start = Instant::now();
            let outcome = match catch_unwind(AssertUnwindSafe(|| undo(end))) {
                Ok(o) => o,
                Err(p) => {
                    let message = panic_message(&*p);
                    crate::sync::drop_payload(p); // it may panic on drop too
                    UndoOutcome::Panicked(message)
                }
            };
            let took = start.elapsed();
            if outcome.is_clean() {
                tracing::debug!(group = %self.name, stage = %name, ?took, "stage undone");
            } else {
                tracing::warn!(group = %self.name, stage = %name, ?took, %outcome, "stage undo was not clean");
            }
            report.undone.push(UndoneStage {
                name,
                outcome,
                took,
            });
        }
        report
    }

    /// Undoes every started stage in reverse order; thread and pool stages
    /// wait at most until `deadline` from now (or their own deadline,
    /// whichever is sooner), whatever their threads' and jobs' stop
    /// callbacks do. Plain undo closures ([`start`](Stages::start)) are the
    /// caller's code and run here to completion: a blocking one delays the
    /// shutdown (its time shows in the report); a panicking one is
    /// contained and reported. Idempotent: a second call reports nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut s = threadward::Stages::new("svc");
    /// s.start("a", || Ok::<_, std::io::Error>(((), || {}))).unwrap();
    /// assert_eq!(s.shutdown(std::time::Duration::from_secs(1)).undone.len(), 1);
    /// assert!(s.shutdown(std::time::Duration::from_secs(1)).undone.is_empty());
    /// ```
    pub fn shutdown(&mut self, deadline: Duration) -> StagesReport {
        self.undo_all(Instant::now().checked_add(deadline))
    }
}

/// `d`, cut short by the group's overall deadline.
fn clamp(d: Duration, end: Option<Instant>) -> Duration {
    match end {
        Some(e) => d.min(e.saturating_duration_since(Instant::now())),
        None => d,
    }
}

impl Drop for Stages {
    fn drop(&mut self) {
        if !self.started.is_empty() {
            let report = self.shutdown(self.drop_deadline);
            tracing::debug!(group = %self.name, stages = report.undone.len(), "stages undone on drop");
        }
    }
}

impl fmt::Debug for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stages")
            .field("name", &self.name)
            .field("started", &self.started())
            .field("degraded", &self.degraded)
            .finish()
    }
}
