//! The MCP client side of the harness: a `ClientHandler` that records every progress
//! notification the server sends, with the time it arrived.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::ClientHandler;
use rmcp::RoleClient;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::NotificationContext;

/// One progress notification and when it arrived.
#[derive(Debug, Clone)]
pub struct Progress {
    pub at: Instant,
    pub param: ProgressNotificationParam,
}

/// Records progress notifications; otherwise behaves like the default client.
#[derive(Clone, Default)]
pub struct Recorder {
    progress: Arc<Mutex<Vec<Progress>>>,
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

    /// Every notification received so far.
    pub fn all_progress(&self) -> Vec<Progress> {
        self.progress.lock().expect("progress lock").clone()
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
    }
}
