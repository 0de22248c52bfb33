//! Emails a use case sends once its change has committed: rendered from their templates
//! ([`crate::mail::templates`]) and delivered in a background task, so that the answer
//! never waits for (or fails with) the mail server. A failure is logged; it never undoes
//! or fails the change it reports.

use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::domain::Email;
use crate::mail::templates::{self, Template};
use crate::mail::{Mailer, OutgoingEmail};
use crate::telemetry::ErrorChain;

/// Sends templated emails after the answer; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    mailer: Mailer,
    background: TaskTracker,
}

impl Outbox {
    /// An outbox that delivers through `mailer` in tasks of `background` (which the Lambda
    /// adapter and the server's shutdown wait for).
    pub fn new(mailer: Mailer, background: TaskTracker) -> Self {
        Self { mailer, background }
    }

    /// Renders `template` for `to` with `values` and delivers it in the background.
    pub fn send(&self, template: Template, to: &Email, values: &[(&str, &str)]) {
        let Some(email) = render(template, to, values) else {
            return;
        };
        let mailer = self.mailer.clone();
        self.background.spawn(
            async move {
                mailer.deliver(email).await;
            }
            .instrument(tracing::info_span!("email", template = template.name())),
        );
    }

    /// Renders `template` for `to` with `values` and delivers it now, in the caller's task
    /// (for work that runs in the background already).
    pub async fn deliver(&self, template: Template, to: &Email, values: &[(&str, &str)]) {
        if let Some(email) = render(template, to, values) {
            self.mailer.deliver(email).await;
        }
    }
}

/// The email, or `None` (logged) when the template does not render.
fn render(template: Template, to: &Email, values: &[(&str, &str)]) -> Option<OutgoingEmail> {
    templates::render(template, to, values)
        .inspect_err(|e| {
            tracing::error!(template = template.name(), error = %ErrorChain(e), "could not render an email; none sent");
        })
        .ok()
}
