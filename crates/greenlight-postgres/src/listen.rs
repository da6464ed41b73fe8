//! Wake-ups from NOTIFY, on a connection of their own.
//!
//! LISTEN binds to a session, so it cannot live on a pooled connection that
//! other operations borrow. One task owns a dedicated connection, turns each
//! notification into a wake-up, and when the connection drops reconnects
//! with exponential backoff, sending one wake-up after reconnecting since
//! notifications sent while it was away are lost.

use std::pin::pin;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use greenlight_core::{Error, Result, Wakeups};
use tokio::sync::mpsc;

use crate::NOTIFY_CHANNEL;
use crate::error::{Secrets, connection_error, query_error};

/// The first pause before reconnecting; doubled after each failure.
const BACKOFF_START: Duration = Duration::from_millis(100);

/// The longest pause between reconnection attempts: a server that is down
/// for long is tried twice a minute, and the worker polls meanwhile.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// How long the connection may stay silent before a test query checks it:
/// a connection lost without a word (a dropped network path) is noticed
/// within this time rather than never.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The `application_name` of the listening connection, so an operator can
/// find it in `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "greenlight-listener";

/// Connects, listens, and hands back the stream of wake-ups. The first
/// connection's failure is the caller's error (a worker then polls); later
/// failures are retried in the background.
pub(crate) async fn wakeups(
    database_url: String,
    secrets: Secrets,
    connect_timeout: Duration,
) -> Result<Wakeups> {
    let url = with_application_name(&database_url);
    let connection = listen(&url, &secrets, connect_timeout).await?;

    // Capacity one: a wake-up carries no data, so while one waits unread,
    // more add nothing.
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(run(connection, url, secrets, connect_timeout, sender));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|()| ((), receiver))
    });
    Ok(Box::pin(stream))
}

async fn listen(url: &str, secrets: &Secrets, timeout: Duration) -> Result<AsyncPgConnection> {
    let mut connection = tokio::time::timeout(timeout, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| {
            Error::unavailable(format!(
                "timed out connecting to PostgreSQL at {}",
                secrets.redacted_url()
            ))
        })?
        .map_err(|error| connection_error(error, secrets))?;
    connection
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await
        .map_err(|error| query_error(error, secrets))?;
    Ok(connection)
}

/// Why the pump stopped.
enum Stop {
    /// Nobody listens to the stream any more: the task ends.
    Dropped,
    /// The connection failed: reconnect.
    Lost(String),
}

async fn run(
    mut connection: AsyncPgConnection,
    url: String,
    secrets: Secrets,
    connect_timeout: Duration,
    sender: mpsc::Sender<()>,
) {
    loop {
        match pump(&mut connection, &sender).await {
            Stop::Dropped => return,
            Stop::Lost(reason) => {
                tracing::warn!(%reason, "lost the NOTIFY connection; reconnecting");
            }
        }

        let mut backoff = BACKOFF_START;
        connection = loop {
            tokio::select! {
                () = sender.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            match listen(&url, &secrets, connect_timeout).await {
                Ok(connection) => break connection,
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "cannot reconnect the NOTIFY connection");
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        };
        tracing::debug!("NOTIFY connection back");
        // Work enqueued while disconnected sent notifications nobody heard.
        let _ = sender.try_send(());
    }
}

/// Forwards notifications until the connection fails or the stream's
/// reader goes away.
async fn pump(connection: &mut AsyncPgConnection, sender: &mpsc::Sender<()>) -> Stop {
    loop {
        let next = {
            let mut notifications = pin!(connection.notifications_stream());
            tokio::select! {
                () = sender.closed() => return Stop::Dropped,
                item = notifications.next() => Some(item),
                () = tokio::time::sleep(IDLE_CHECK) => None,
            }
        };
        match next {
            // A full channel already holds a wake-up; a closed one is seen
            // by `closed()` on the next turn.
            Some(Some(Ok(_))) => {
                let _ = sender.try_send(());
            }
            Some(Some(Err(error))) => return Stop::Lost(error.to_string()),
            Some(None) => return Stop::Lost("the connection closed".to_owned()),
            None => {
                if let Err(error) = diesel::sql_query("SELECT 1").execute(connection).await {
                    return Stop::Lost(error.to_string());
                }
            }
        }
    }
}

/// The URL with an `application_name` added, unless it names one.
fn with_application_name(url: &str) -> String {
    if url.contains("application_name") {
        return url.to_owned();
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}application_name={APPLICATION_NAME}")
    } else {
        format!("{url} application_name={APPLICATION_NAME}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_is_added_once() {
        assert_eq!(
            with_application_name("postgres://u@h/db"),
            "postgres://u@h/db?application_name=greenlight-listener"
        );
        assert_eq!(
            with_application_name("postgres://u@h/db?sslmode=disable"),
            "postgres://u@h/db?sslmode=disable&application_name=greenlight-listener"
        );
        assert_eq!(
            with_application_name("host=h user=u"),
            "host=h user=u application_name=greenlight-listener"
        );
        assert_eq!(
            with_application_name("postgres://u@h/db?application_name=mine"),
            "postgres://u@h/db?application_name=mine"
        );
    }
}
