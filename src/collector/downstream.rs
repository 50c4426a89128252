//! Where the collector's findings go. `worker_down` always goes to the master (which reclaims the
//! worker's leases at once); alerts and worker views go to the store: directly with a shared
//! backend (Redis), or through the master when the master owns the store (embedded). Items wait
//! in memory while their destination is away; views are coalesced to the latest per worker.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::watchtower::{Outgoing, WORKER_VIEW_TTL};
use crate::backend::config::PeerBackend;
use crate::protocol::{
    Alert, ClientTls, Dial, Greeting, Message, ProtocolError, RequestError, Requester, Role,
    WorkerView,
};

/// Alert events kept while their destination is away; older ones are dropped (the alert log
/// still has them).
const MAX_PENDING_ALERTS: usize = 1000;
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Destinations of the collector's findings.
#[derive(Clone)]
pub struct Downstream {
    /// The master's `host:port`, for `worker_down`.
    pub master: Option<String>,
    /// The cluster token for the hello to the master, when the cluster has one.
    pub token: Option<String>,
    /// TLS towards the master, when it serves TLS.
    pub tls: Option<ClientTls>,
    /// Where alerts and worker views are stored (the master itself, for the embedded backend).
    /// When the backend is shared (Redis) it also hands out the queue's admin side: then the
    /// collector reclaims a dead worker's tasks itself, so recovery does not wait for a master
    /// that may be restarting, and tells the master best effort. Otherwise the master reclaims
    /// them when told.
    pub backend: PeerBackend,
}

#[derive(Default)]
struct Pending {
    downs: VecDeque<Outgoing>,
    alerts: VecDeque<Alert>,
    views: BTreeMap<String, WorkerView>,
}

impl Pending {
    fn add(&mut self, item: Outgoing) {
        match item {
            down @ Outgoing::WorkerDown { .. } => self.downs.push_back(down),
            Outgoing::Alert(alert) => {
                if self.alerts.len() == MAX_PENDING_ALERTS {
                    self.alerts.pop_front();
                }
                self.alerts.push_back(alert);
            }
            Outgoing::Worker(view) => {
                self.views.insert(view.worker_id.clone(), *view);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.downs.is_empty() && self.alerts.is_empty() && self.views.is_empty()
    }
}

/// Forwards items from `items` until `shutdown` completes.
pub async fn forward(
    downstream: Downstream,
    mut items: UnboundedReceiver<Outgoing>,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    let mut pending = Pending::default();
    let mut master: Option<Requester> = None;
    let mut retry = RETRY_MIN;
    let mut failing = false;
    loop {
        while let Ok(item) = items.try_recv() {
            pending.add(item);
        }
        if pending.is_empty() {
            tokio::select! {
                item = items.recv() => match item {
                    Some(item) => pending.add(item),
                    None => return,
                },
                _ = &mut shutdown => return,
            }
            continue;
        }
        match flush(&downstream, &mut master, &mut pending).await {
            Ok(()) => {
                if failing {
                    tracing::info!("forwarding to the master and store again");
                }
                failing = false;
                retry = RETRY_MIN;
            }
            Err(err) => {
                // Warn once per outage, not on every retry.
                if !failing {
                    tracing::warn!(error = %err, "cannot forward alerts; will retry");
                }
                failing = true;
                master = None;
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = &mut shutdown => return,
                }
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Why forwarding stopped for now.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("master: {0}")]
    Master(#[from] ProtocolError),
    #[error("master: {0}")]
    Unreachable(String),
    #[error("master refused: {0}")]
    Refused(String),
    #[error("store: {0}")]
    Store(#[from] crate::backend::BackendError),
}

/// Sends everything pending, most urgent first: `worker_down`, then alerts, then views.
async fn flush(
    downstream: &Downstream,
    master: &mut Option<Requester>,
    pending: &mut Pending,
) -> Result<(), ForwardError> {
    while let Some(down) = pending.downs.front() {
        let Outgoing::WorkerDown {
            worker_id,
            timestamp,
            last_task_id,
            reason,
        } = down.clone()
        else {
            pending.downs.pop_front();
            continue;
        };
        let mut message = Message::WorkerDown {
            worker_id: worker_id.clone(),
            timestamp,
            last_task_id,
            reason,
            requeued_by_collector: None,
        };
        if let Some(admin) = &downstream.backend.admin {
            let reclaimed = admin.reclaim_worker(&worker_id).await?;
            tracing::info!(worker = %worker_id, reclaimed, "re-queued the dead worker's tasks");
            if let Message::WorkerDown {
                requeued_by_collector,
                ..
            } = &mut message
            {
                *requeued_by_collector = Some(reclaimed as u64);
            }
            if let Err(err) = request(downstream, master, &message).await {
                tracing::debug!(error = %err, "master not told of the dead worker");
                *master = None;
            }
        } else if downstream.master.is_some() {
            match request(downstream, master, &message).await? {
                Message::WorkerDownAck { reclaimed, .. } => {
                    tracing::info!(worker = %worker_id, reclaimed, "master re-queued the dead worker's tasks");
                }
                other => return Err(ForwardError::Refused(format!("{other:?}"))),
            }
        }
        pending.downs.pop_front();
    }
    while let Some(alert) = pending.alerts.front() {
        downstream
            .backend
            .monitor
            .push_alert(&to_json(alert))
            .await?;
        pending.alerts.pop_front();
    }
    while let Some((worker, view)) = pending.views.pop_first() {
        let result = downstream
            .backend
            .monitor
            .put_worker_metrics(&view.worker_id, &to_json(&view), WORKER_VIEW_TTL)
            .await;
        if let Err(err) = result {
            pending.views.entry(worker).or_insert(view);
            return Err(err.into());
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Sends one request to the master (connecting first if needed) and returns its reply.
async fn request(
    downstream: &Downstream,
    master: &mut Option<Requester>,
    message: &Message,
) -> Result<Message, ForwardError> {
    let Some(address) = &downstream.master else {
        return Err(ForwardError::Refused("no master configured".into()));
    };
    if master.is_none() {
        let greeting = Greeting::new(Role::Collector).with_token(downstream.token.clone());
        let dial = Dial {
            connect_timeout: REPLY_TIMEOUT,
            attempts: 1,
            read_timeout: Some(REPLY_TIMEOUT),
            tls: downstream.tls.clone(),
        };
        *master = Some(Requester::connect(address, &greeting, &dial).await?);
        tracing::info!(master = %address, "connected to master");
    }
    let Some(requester) = master.as_mut() else {
        return Err(ProtocolError::Closed.into());
    };
    Ok(requester.request(message).await?)
}

impl From<RequestError> for ForwardError {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::Unreachable { address, reason } => {
                ForwardError::Unreachable(format!("{address}: {reason}"))
            }
            RequestError::Refused { code, message } => {
                ForwardError::Refused(format!("{code}: {message}"))
            }
            RequestError::ResultRefused { reason, message } => {
                ForwardError::Refused(format!("{reason}: {message}"))
            }
            RequestError::Tls { reason, .. } => ForwardError::Refused(reason),
            RequestError::Protocol(err) => ForwardError::Master(err),
        }
    }
}
