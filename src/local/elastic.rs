//! `up`'s elastic side: where the collector delivers alerts, and how many workers follow the
//! queue.

use std::time::Duration;

use super::autoscale::{parse_range, Autoscaler, Policy};
use gridwatch::time::parse_duration;

/// Alert receivers for `up`'s collector, and autoscaling.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ElasticArgs {
    /// Prometheus Alertmanager base URL (http://HOST:9093) the collector sends every alert to.
    #[arg(long, env = "GRIDWATCH_ALERTMANAGER", value_name = "URL")]
    pub alertmanager: Option<String>,
    /// Webhook URL the collector POSTs every alert event to as JSON. Repeat for several.
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// Follow the queue with MIN to MAX workers (e.g. 1-3) instead of --workers: start one
    /// when tasks have waited longer than --scale-up-after, stop a spare one after
    /// --scale-down-after. A stopped worker finishes or returns its tasks and raises no alert.
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_range)]
    pub autoscale: Option<(usize, usize)>,
    /// How long the oldest waiting task may wait before a worker is added (and the least time
    /// between two additions).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub scale_up_after: Option<Duration>,
    /// How long nothing may wait while a worker is spare before one is stopped (and the least
    /// time between two removals).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub scale_down_after: Option<Duration>,
}

impl ElasticArgs {
    /// The autoscaler `--autoscale` asks for, if any.
    pub fn autoscaler(&self) -> Option<Autoscaler> {
        let (min, max) = self.autoscale?;
        Some(Autoscaler::new(Policy {
            min,
            max,
            up_after: self.scale_up_after.unwrap_or(Duration::from_secs(3)),
            down_after: self.scale_down_after.unwrap_or(Duration::from_secs(30)),
        }))
    }

    /// The collector's alert receiver flags, as `up` was given them.
    pub fn delivery_flags(&self) -> Vec<String> {
        let alertmanager = self.alertmanager.iter().filter(|url| !url.is_empty());
        let alertmanager = alertmanager.flat_map(|url| ["--alertmanager".to_string(), url.clone()]);
        let webhooks = self
            .webhooks
            .iter()
            .flat_map(|url| ["--webhook".to_string(), url.clone()]);
        alertmanager.chain(webhooks).collect()
    }
}
