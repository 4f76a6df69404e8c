//! The node's log lines go through ROS logging (rcutils): printed the ROS way, published on
//! /rosout, and filtered by `--ros-args --log-level LEVEL` (rcl applies it when the context is
//! created). `tracing` events of this crate are forwarded; rcutils decides what is shown and
//! colours only on a terminal.

use std::fmt::Write as _;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

static LOGGER: OnceLock<String> = OnceLock::new();

/// The ROS logger name to log under once the node exists (e.g. `dasgil_localizer`, or
/// `ns.dasgil_localizer` in a namespace); before that, `dasgil_localizer`.
pub fn set_logger(name: &str) {
    let _ = LOGGER.set(name.to_string());
}

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// Forwards events to `r2r::log`.
pub struct RosLog;

impl<S: Subscriber> Layer<S> for RosLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let meta = event.metadata();
        let severity = match *meta.level() {
            Level::ERROR => r2r::LogSeverity::Error,
            Level::WARN => r2r::LogSeverity::Warn,
            Level::INFO => r2r::LogSeverity::Info,
            _ => r2r::LogSeverity::Debug,
        };
        let logger = LOGGER
            .get()
            .map(String::as_str)
            .unwrap_or("dasgil_localizer");
        r2r::log(
            &format!("{}{}", text.message, text.fields),
            logger,
            meta.file().unwrap_or(""),
            meta.line().unwrap_or(0),
            severity,
        );
    }
}
