//! Telling customers: notices are recorded by the writes that cause them (the outbox, see
//! [`crate::model::notice_of_transition`]); a relay brings each one to the notification worker
//! (the orders table's stream on AWS, the notices table's feed locally), or else the ledger
//! queues its delivery after the write; the notification worker renders and sends it
//! ([`Notifier`]), claiming it first so a redelivered message never sends it twice; the sweep
//! re-queues a notice nobody claimed ([`relay_lost_notices`]). Customers list their own
//! ([`NoticeBoard`]).

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::auth::Session;
use crate::clock::Clock;
use crate::error::Result;
use crate::mail::{MailError, Mailer, OutgoingEmail};
use crate::model::{Notice, NoticeKind};
use crate::queue::OutgoingMessage;
use crate::store::{NoticeClaim, NoticeStore, Page};

/// How long one delivery holds a notice: shorter than the queue's visibility timeout, so the
/// next delivery of a message whose worker died can claim it.
const DELIVERY_LEASE: Duration = Duration::seconds(30);

/// The notification queue's messages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoticeMessage {
    Deliver {
        notice_id: Uuid,
    },
    /// A password reset's email, whole: the code is never stored (only its hash is), so the
    /// message carries it, as the payments queue carries a card token. Sent at least once,
    /// with the reset's id as the Message-ID.
    PasswordReset {
        reset_id: Uuid,
        to_name: String,
        to_email: String,
        code: String,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// A security email: the account's password or email changed. Sent at least once, with
    /// `email_id` as the Message-ID.
    AccountChanged {
        email_id: Uuid,
        to_name: String,
        to_email: String,
        #[serde(flatten)]
        change: AccountChange,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// Queues the security email of an account change. After the change is written: a send that
/// fails is logged and the change stands (the customer loses only the email).
pub(super) async fn queue_account_email(
    queue: &dyn crate::queue::Queue,
    to_name: &str,
    to_email: &str,
    change: AccountChange,
    at: OffsetDateTime,
) {
    let email_id = Uuid::now_v7();
    let message = NoticeMessage::AccountChanged {
        email_id,
        to_name: to_name.to_owned(),
        to_email: to_email.to_owned(),
        change,
        at,
    };
    let outgoing = match message.outgoing(&email_id.to_string()) {
        Ok(outgoing) => outgoing,
        Err(err) => {
            tracing::error!(%email_id, error = %err, "account email not composed");
            return;
        }
    };
    if let Err(err) = queue.send(crate::queue::QueueName::Notifications, &outgoing, Duration::ZERO).await {
        tracing::warn!(%email_id, error = %err, "account email not queued; the change stands");
    }
}

/// What changed in an account, as its security email tells the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AccountChange {
    PasswordChanged,
    PasswordReset,
    /// Told to the address it was changed from.
    EmailChanged {
        new_email: String,
    },
}

impl std::fmt::Debug for NoticeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoticeMessage::Deliver { notice_id } => f.debug_struct("Deliver").field("notice_id", notice_id).finish(),
            NoticeMessage::AccountChanged { email_id, change, .. } => f
                .debug_struct("AccountChanged")
                .field("email_id", email_id)
                .field("change", change)
                .finish_non_exhaustive(),
            NoticeMessage::PasswordReset { reset_id, .. } => {
                f.debug_struct("PasswordReset").field("reset_id", reset_id).finish_non_exhaustive()
            }
        }
    }
}

impl NoticeMessage {
    /// The queue message that delivers `notice_id`, carrying the flow's correlation id: what the
    /// ledger sends after a write, and the delivery a relay (the stream, the notice feed) hands
    /// to the worker.
    pub fn delivery(notice_id: Uuid, correlation_id: &str) -> Result<OutgoingMessage, String> {
        NoticeMessage::Deliver { notice_id }.outgoing(correlation_id)
    }

    /// This message as the notifications queue carries it.
    pub(super) fn outgoing(&self, correlation_id: &str) -> Result<OutgoingMessage, String> {
        let body = serde_json::to_string(self).map_err(|e| format!("message JSON: {e}"))?;
        Ok(OutgoingMessage::new(body).with_correlation_id(correlation_id))
    }
}

/// GET /customers/{id}/notifications query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct NoticeQuery {
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// A customer's notices, as they read them.
#[derive(Clone)]
pub struct NoticeBoard {
    store: Arc<dyn NoticeStore>,
}

impl NoticeBoard {
    pub fn new(store: Arc<dyn NoticeStore>) -> Self {
        Self { store }
    }

    /// Newest first: the customer's own, or any customer's for an admin (404 for anyone else).
    pub async fn notices(&self, session: &Session, customer: Uuid, query: NoticeQuery) -> Result<Page<Notice>> {
        session.require_self_or_admin(customer, "customer")?;
        let page = super::page_request(query.limit, query.next_token)?;
        Ok(self.store.list_notices(customer, &page).await?)
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Sent before (a duplicate or late message), or gone: nothing to do.
    NothingToDo,
    /// Another delivery holds it, or the mail service failed: try again later.
    Retry,
    /// The mail service refuses this message for good (say, a malformed address).
    Refused,
}

/// A password reset's email, as its queue message carries it.
pub struct ResetEmail<'a> {
    pub reset_id: Uuid,
    pub to_name: &'a str,
    pub to_email: &'a str,
    pub code: &'a str,
    pub expires_at: OffsetDateTime,
}

#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn NoticeStore>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
}

impl Notifier {
    pub fn new(store: Arc<dyn NoticeStore>, mailer: Arc<dyn Mailer>, clock: Arc<dyn Clock>) -> Self {
        Self { store, mailer, clock }
    }

    /// Claims the notice, sends it, marks it sent. A crash after sending and before marking
    /// sends it again once the claim's lease has passed: the one window in which a customer
    /// may get a notice twice (with the same Message-ID, which mail clients recognise).
    pub async fn deliver(&self, notice_id: Uuid) -> Result<Delivery> {
        let now = self.clock.now();
        let notice = match self.store.claim_notice(notice_id, now, now + DELIVERY_LEASE).await? {
            NoticeClaim::Claimed(notice) => notice,
            NoticeClaim::Sent | NoticeClaim::Missing => return Ok(Delivery::NothingToDo),
            NoticeClaim::Leased => return Ok(Delivery::Retry),
        };
        match self.mailer.send(&render(&notice)).await {
            Ok(()) => {
                self.store.mark_notice_sent(notice.id, self.clock.now()).await?;
                crate::telemetry::metric("NoticesSent", 1);
                tracing::info!(notice_id = %notice.id, kind = ?notice.kind, order_id = %notice.order_id, "notice sent");
                Ok(Delivery::Sent)
            }
            Err(MailError::Refused(detail)) => {
                tracing::error!(notice_id = %notice.id, %detail, "notice refused by the mail service");
                crate::telemetry::metric("NoticesRefused", 1);
                Ok(Delivery::Refused)
            }
            Err(MailError::Unavailable(detail)) => {
                tracing::warn!(notice_id = %notice.id, %detail, "notice not sent; will retry");
                Ok(Delivery::Retry)
            }
        }
    }

    /// Sends an account's email (a security email, a reset's code): no notice, so no claim; a
    /// redelivered message sends it again, with the same Message-ID (the `.eml` outbox keeps
    /// the first). `what` names it in the logs.
    pub async fn send_account_email(&self, email: &OutgoingEmail, what: &'static str) -> Delivery {
        match self.mailer.send(email).await {
            Ok(()) => {
                crate::telemetry::metric("AccountEmailsSent", 1);
                tracing::info!(email_id = %email.id, what, "account email sent");
                Delivery::Sent
            }
            Err(MailError::Refused(detail)) => {
                tracing::error!(email_id = %email.id, what, %detail, "account email refused by the mail service");
                Delivery::Refused
            }
            Err(MailError::Unavailable(detail)) => {
                tracing::warn!(email_id = %email.id, what, %detail, "account email not sent; will retry");
                Delivery::Retry
            }
        }
    }

    /// Sends a password reset's email, unless its code has expired (a message retried that
    /// long).
    pub async fn send_password_reset(&self, reset: ResetEmail<'_>) -> Delivery {
        if reset.expires_at <= self.clock.now() {
            tracing::info!(reset_id = %reset.reset_id, "password reset expired before it could be sent; dropped");
            return Delivery::NothingToDo;
        }
        self.send_account_email(&render_password_reset(&reset), "password reset").await
    }
}

/// Re-queues notices whose message was lost (never claimed since they were recorded): the
/// sweep's part of "never lost". Each is put off for `every` before it may be relayed again.
pub(super) async fn relay_lost_notices(
    store: &dyn NoticeStore,
    ledger: &super::Ledger,
    now: OffsetDateTime,
    every: Duration,
) -> Result<u32> {
    let mut relayed = 0;
    for notice in store.notices_to_relay(now, 100).await? {
        store.defer_relay(notice.id, now + every).await?;
        if ledger.queue_notice(notice.id, "sweep").await {
            relayed += 1;
        }
    }
    Ok(relayed)
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100)
}

/// Text made safe for HTML: every notice field may hold what a customer or an admin typed.
fn html_text(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn when(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc2822).unwrap_or_else(|_| t.to_string())
}

/// The security email of an account change.
pub fn render_account_email(
    email_id: Uuid,
    to_name: &str,
    to_email: &str,
    change: &AccountChange,
    at: OffsetDateTime,
) -> OutgoingEmail {
    let (subject, what) = match change {
        AccountChange::PasswordChanged => (
            "Your Orderly password was changed".to_owned(),
            format!("The password of your Orderly account was changed on {}.", when(at)),
        ),
        AccountChange::PasswordReset => (
            "Your Orderly password was reset".to_owned(),
            format!("The password of your Orderly account was reset with a code sent to this address on {}.", when(at)),
        ),
        AccountChange::EmailChanged { new_email } => (
            "The email of your Orderly account was changed".to_owned(),
            format!(
                "The email of your Orderly account was changed on {} to {new_email}. This address gets no more of its emails.",
                when(at)
            ),
        ),
    };
    let paragraphs =
        [what, "If it was not you, reset your password now and tell us: someone may have your account.".to_owned()];
    account_email(email_id, to_name, to_email, subject, &paragraphs)
}

/// An account's email (no order in it): a greeting, the paragraphs, as text and as HTML.
fn account_email(id: Uuid, to_name: &str, to_email: &str, subject: String, paragraphs: &[String]) -> OutgoingEmail {
    let mut text = format!("Hello {to_name},\n\n");
    let mut html = format!("<!DOCTYPE html><html><body><p>Hello {},</p>", html_text(to_name));
    for paragraph in paragraphs {
        let _ = write!(text, "{paragraph}\n\n");
        let _ = write!(html, "<p>{}</p>", html_text(paragraph));
    }
    text.push_str("Orderly\n");
    html.push_str("<p>Orderly</p></body></html>");
    OutgoingEmail { id, to_name: to_name.to_owned(), to_email: to_email.to_owned(), subject, text, html }
}

/// The email a password reset becomes.
fn render_password_reset(reset: &ResetEmail<'_>) -> OutgoingEmail {
    let ResetEmail { reset_id, to_name, to_email, code, expires_at } = *reset;
    let paragraphs = [
        "Someone, we hope you, asked to reset the password of your Orderly account.".to_owned(),
        format!("Your reset code is: {code}"),
        format!(
            "Enter it with a new password where you asked for the reset. It works once, until {}, and signs \
             you out everywhere.",
            when(expires_at)
        ),
        "If it was not you, ignore this email: your password is unchanged.".to_owned(),
    ];
    account_email(reset_id, to_name, to_email, "Reset your Orderly password".to_owned(), &paragraphs)
}

/// The email a notice becomes: the same paragraphs as plain text and as HTML. Only the order
/// and payment ids appear, never an internal id, and of a card only brand and last four.
pub fn render(notice: &Notice) -> OutgoingEmail {
    let order = notice.order_id;
    let (subject, mut paragraphs): (String, Vec<String>) = match notice.kind {
        NoticeKind::OrderAccepted => match notice.release_at {
            Some(release_at) => (
                format!("We have your order {order}"),
                vec![format!(
                    "Your order is accepted and its items are reserved. You ordered a few minutes ago, so it goes \
                     ahead at {} (status: processing order); we will write again then.",
                    when(release_at)
                )],
            ),
            None => (
                format!("Order confirmed: {order}"),
                vec![match notice.payment_due_at {
                    Some(due) => format!("Your order is confirmed and reserved for you. Please pay by {}.", when(due)),
                    None => "Your order is confirmed and reserved for you.".to_owned(),
                }],
            ),
        },
        NoticeKind::OrderReleased => (
            format!("Your order {order} is ready for payment"),
            vec![match notice.payment_due_at {
                Some(due) => format!("Your order has gone ahead and awaits payment, by {}.", when(due)),
                None => "Your order has gone ahead and awaits payment.".to_owned(),
            }],
        ),
        NoticeKind::PaymentSucceeded => {
            let mut lines = vec!["Thank you: we received your payment. This is your receipt.".to_owned()];
            if let Some(payment) = &notice.payment {
                lines.push(format!(
                    "Paid {} with {} ending in {}. Payment {}.",
                    money(payment.amount_cents),
                    payment.brand,
                    payment.last4,
                    payment.id
                ));
            }
            (format!("Receipt for order {order}"), lines)
        }
        NoticeKind::PaymentFailed => {
            let reason = notice.payment.as_ref().and_then(|p| p.failure_reason.clone()).unwrap_or_default();
            let card = notice
                .payment
                .as_ref()
                .map(|p| format!(" with {} ending in {} (payment {})", p.brand, p.last4, p.id))
                .unwrap_or_default();
            (
                format!("Payment failed for order {order}"),
                vec![
                    format!("Your payment{card} did not go through: {}.", reason.replace('_', " ")),
                    "Your order is still reserved: you can pay again, with another card if need be, before the \
                     payment deadline."
                        .to_owned(),
                ],
            )
        }
        NoticeKind::OrderShipped => (
            format!("Order {order} has shipped"),
            vec![format!(
                "Your order is on its way with {}, tracking number {}.",
                notice.carrier.as_deref().unwrap_or("our carrier"),
                notice.tracking_number.as_deref().unwrap_or("(none yet)")
            )],
        ),
        NoticeKind::OrderDelivered => {
            (format!("Order {order} was delivered"), vec!["Your order was delivered. Enjoy!".to_owned()])
        }
        NoticeKind::OrderCancelled => {
            let mut lines = vec![format!(
                "Your order was cancelled{}.",
                notice.cancel_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            )];
            if notice.refunded {
                let amount = notice.payment.as_ref().map_or(notice.total_cents, |p| p.amount_cents);
                lines.push(format!("We refunded {} to your card.", money(amount)));
            }
            (format!("Order {order} was cancelled"), lines)
        }
    };
    paragraphs.push(format!("Order {order}, {} in total:", money(notice.total_cents)));

    let mut text = format!("Hello {},\n\n", notice.to_name);
    let mut html = format!("<!DOCTYPE html><html><body><p>Hello {},</p>", html_text(&notice.to_name));
    for paragraph in &paragraphs {
        let _ = write!(text, "{paragraph}\n\n");
        let _ = write!(html, "<p>{}</p>", html_text(paragraph));
    }
    html.push_str("<table>");
    for line in &notice.lines {
        let _ = writeln!(text, "  {} x {}  {}", line.quantity, line.name, money(line.line_total_cents));
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            line.quantity,
            html_text(&line.name),
            money(line.line_total_cents)
        );
    }
    text.push_str("\nOrderly\n");
    html.push_str("</table><p>Orderly</p></body></html>");
    OutgoingEmail {
        id: notice.id,
        to_name: notice.to_name.clone(),
        to_email: notice.to_email.clone(),
        subject,
        text,
        html,
    }
}
