//! The MCP client side of the harness: a `ClientHandler` that records every progress
//! notification the server sends, with the time it arrived, and a transport wrapper
//! that counts them as they are read, so a test can wait until every notification
//! received has been handled (rmcp runs each handler on its own task).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::ClientHandler;
use rmcp::RoleClient;
use rmcp::model::{
    JsonRpcMessage, JsonRpcNotification, ProgressNotificationParam, ProgressToken,
    ServerNotification,
};
use rmcp::service::{NotificationContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::watch;

use super::CALL_TIMEOUT;

/// One progress notification and when it arrived.
#[derive(Debug, Clone)]
pub struct Progress {
    pub at: Instant,
    pub param: ProgressNotificationParam,
}

/// Records progress notifications; otherwise behaves like the default client.
#[derive(Clone)]
pub struct Recorder {
    progress: Arc<Mutex<Vec<Progress>>>,
    /// How many notifications the handler has recorded.
    handled: Arc<watch::Sender<usize>>,
    /// How many notifications the transport has read (see [`Recorder::counting`]).
    received: Arc<AtomicUsize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            progress: Arc::default(),
            handled: Arc::new(watch::Sender::new(0)),
            received: Arc::default(),
        }
    }
}

impl Recorder {
    /// Notifications received so far for `token`.
    pub fn progress_for(&self, token: &ProgressToken) -> Vec<Progress> {
        self.progress
            .lock()
            .expect("progress lock")
            .iter()
            .filter(|p| &p.param.progress_token == token)
            .cloned()
            .collect()
    }

    /// Waits for the first progress notification; panics after [`CALL_TIMEOUT`].
    pub async fn progress_arrived(&self) {
        self.handled_at_least(1, "no progress notification arrived")
            .await;
    }

    /// Waits until every progress notification read so far has been recorded.
    pub async fn caught_up(&self) {
        let received = self.received.load(Ordering::SeqCst);
        self.handled_at_least(
            received,
            "received progress notifications were never handled",
        )
        .await;
    }

    async fn handled_at_least(&self, n: usize, what: &str) {
        let mut handled = self.handled.subscribe();
        if tokio::time::timeout(CALL_TIMEOUT, handled.wait_for(|h| *h >= n))
            .await
            .is_err()
        {
            panic!(
                "{what} within {CALL_TIMEOUT:?} ({} of {n} handled)",
                *handled.borrow()
            );
        }
    }

    /// `transport`, counting the progress notifications it reads for this recorder.
    pub fn counting<T>(&self, transport: T) -> Counting<T> {
        Counting {
            inner: transport,
            received: self.received.clone(),
        }
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        param: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let at = Instant::now();
        self.progress
            .lock()
            .expect("progress lock")
            .push(Progress { at, param });
        self.handled.send_modify(|n| *n += 1);
    }
}

/// A client transport that counts the progress notifications it reads. Messages are
/// read in order, so once a response is in, every notification sent before it has
/// been counted.
pub struct Counting<T> {
    inner: T,
    received: Arc<AtomicUsize>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Counting<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ServerNotification::ProgressNotification(_),
            ..
        })) = &message
        {
            self.received.fetch_add(1, Ordering::SeqCst);
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}
