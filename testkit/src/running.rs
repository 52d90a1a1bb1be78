//! A server or worker task that runs until told to stop, and is stopped and
//! awaited when dropped, so nothing a test started outlives it.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a task may take to stop.
const STOP_WITHIN: Duration = Duration::from_secs(10);

pub(crate) struct Running {
    /// For messages: "the API", "the runner", ...
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Spawns `run(stopped)` on `runtime`; `stopped` resolves when the task
    /// is told to stop.
    pub(crate) fn spawn<F, Fut>(what: &'static str, runtime: &Handle, run: F) -> Running
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(run(StopSignal(stopped)));
        Running {
            what,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Tells the task to stop and waits until it has; panics when it does not
    /// stop in time or panicked. (Only the in-process servers are stopped
    /// before a test ends.)
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_WITHIN, task)
                .await
                .unwrap_or_else(|_| panic!("{} did not stop within {STOP_WITHIN:?}", self.what))
                .unwrap_or_else(|err| panic!("{} failed: {err}", self.what));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return;
        };
        // Waiting needs a runtime that can run the task meanwhile: a
        // multi-thread one lends this thread out. On a current-thread runtime
        // the task stops by itself once it sees the signal.
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
            return;
        }
        tokio::task::block_in_place(|| {
            let _ = runtime.block_on(tokio::time::timeout(STOP_WITHIN, task));
        });
    }
}

/// Resolves when the task is told to stop (or its handle is gone).
pub(crate) struct StopSignal(oneshot::Receiver<()>);

impl StopSignal {
    pub(crate) async fn wait(self) {
        let _ = self.0.await;
    }
}
