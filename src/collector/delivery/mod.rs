//! Alert events to people's tools: a Prometheus Alertmanager and plain webhooks. Each receiver
//! has its own task and bounded queue, and the rules hand events over without waiting
//! (`try_send`), so a receiver that is down or never answers delays neither the rules nor the
//! `worker_down` that re-queues a dead worker's tasks; it only loses its own oldest events.

pub mod alertmanager;
pub mod http;
mod webhook;

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError, Sender};

use self::http::{Endpoint, EndpointError, PostError};
use crate::protocol::Alert;
use crate::time::parse_duration;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// A receiver that comes back hears the alerts within this long.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Where alert events are delivered, and how.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DeliveryArgs {
    /// Prometheus Alertmanager base URL (http://HOST:9093): every alert is posted to its v2 API
    /// with labels alertname, worker and severity, re-sent while it fires, and sent with its end
    /// time when it resolves. Email, Slack, grouping and silences are then configured there.
    #[arg(long, env = "GRIDWATCH_ALERTMANAGER", value_name = "URL")]
    pub alertmanager: Option<String>,
    /// Webhook URL that receives every alert event (firing and resolved) as a JSON object, one
    /// POST per event, retried with backoff until it answers 2xx. Repeat for several.
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// How often alerts still firing are re-sent to the Alertmanager (which expires an alert
    /// not heard from for four intervals, so a vanished collector's alerts end by themselves).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub alert_resend_interval: Duration,
    /// Deadline of one delivery (connect, send, answer); a slower receiver counts as down.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub alert_delivery_timeout: Duration,
    /// Alert events each receiver keeps while it is unreachable; the oldest are dropped beyond.
    #[arg(long, default_value_t = 1000)]
    pub alert_delivery_queue: usize,
}

/// Delivery settings shared by every receiver.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Resend interval of firing alerts (Alertmanager).
    pub resend: Duration,
    /// Deadline of one request.
    pub timeout: Duration,
    /// Events kept per receiver.
    pub queue: usize,
}

/// The rules' side of delivery: hands each event to every receiver's queue without waiting.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    receivers: Vec<(String, Sender<Alert>)>,
}

impl Delivery {
    /// Queues `alert` for every receiver; a full queue drops it for that receiver, with a log.
    pub fn offer(&self, alert: &Alert) {
        for (url, queue) in &self.receivers {
            if let Err(TrySendError::Full(_)) = queue.try_send(alert.clone()) {
                tracing::warn!(url = %url, alert = %alert.id, "alert delivery queue full: event dropped for this receiver (the alert log has it)");
            }
        }
    }

    /// Whether any receiver is configured.
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }
}

impl DeliveryArgs {
    /// Checks every URL, so a typo stops the collector at start rather than losing alerts.
    pub fn endpoints(&self) -> Result<(Option<Endpoint>, Vec<Endpoint>), EndpointError> {
        let alertmanager = self
            .alertmanager
            .as_deref()
            .filter(|url| !url.is_empty())
            .map(|url| Endpoint::parse(url, alertmanager::API_PATH))
            .transpose()?;
        let webhooks = self
            .webhooks
            .iter()
            .map(|url| Endpoint::parse(url, ""))
            .collect::<Result<_, _>>()?;
        Ok((alertmanager, webhooks))
    }

    /// Starts one delivery task per receiver, each stopping when `stopped()` completes.
    pub fn start<F: Future<Output = ()> + Send + 'static>(
        &self,
        stopped: impl Fn() -> F,
    ) -> Result<(Delivery, Vec<tokio::task::JoinHandle<()>>), EndpointError> {
        let (alertmanager, webhooks) = self.endpoints()?;
        let settings = Settings {
            resend: self.alert_resend_interval.max(Duration::from_secs(1)),
            timeout: self.alert_delivery_timeout.max(Duration::from_millis(100)),
            queue: self.alert_delivery_queue.max(1),
        };
        let mut delivery = Delivery::default();
        let mut tasks = Vec::new();
        if let Some(endpoint) = alertmanager {
            let (tx, rx) = mpsc::channel(settings.queue);
            tracing::info!(url = %endpoint.url(), "alerts go to the Alertmanager");
            delivery.receivers.push((endpoint.url(), tx));
            tasks.push(tokio::spawn(alertmanager::deliver(
                endpoint,
                settings,
                rx,
                stopped(),
            )));
        }
        for endpoint in webhooks {
            let (tx, rx) = mpsc::channel(settings.queue);
            tracing::info!(url = %endpoint.url(), "alerts go to the webhook");
            delivery.receivers.push((endpoint.url(), tx));
            tasks.push(tokio::spawn(webhook::deliver(
                endpoint,
                settings,
                rx,
                stopped(),
            )));
        }
        Ok((delivery, tasks))
    }
}

/// Retry pacing of one receiver, logging once per outage rather than at every attempt.
struct Backoff {
    url: String,
    next: Duration,
    failing: bool,
}

impl Backoff {
    fn new(endpoint: &Endpoint) -> Backoff {
        Backoff {
            url: endpoint.url(),
            next: BACKOFF_MIN,
            failing: false,
        }
    }

    fn succeeded(&mut self, alerts: usize) {
        if self.failing {
            tracing::info!(url = %self.url, "alert receiver reachable again");
        }
        tracing::debug!(url = %self.url, alerts, "alerts delivered");
        self.failing = false;
        self.next = BACKOFF_MIN;
    }

    /// Records a failure; returns how long to wait before the next attempt.
    fn failed(&mut self, error: &PostError) -> Duration {
        if !self.failing {
            tracing::warn!(url = %self.url, error = %error, "cannot deliver alerts; will retry with backoff");
        }
        self.failing = true;
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        pause
    }
}
