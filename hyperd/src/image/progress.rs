//! Progress of long image work (pull, push, load) as Docker's JSON messages, sent to whoever
//! streams them to the client. A client that goes away does not stop the work: a pull that
//! finishes is still an image, and a later pull would redo it otherwise. A build is the
//! exception: it watches [`Progress::closed`] and stops (its VM destroyed) when nobody reads.

use hyper_proto::rest::JsonMessage;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<JsonMessage>>,
}

impl Progress {
    /// A progress sink and the stream of its messages.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<JsonMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx: Some(tx) }, rx)
    }

    /// A sink that drops every message (callers that only want the result).
    pub fn discard() -> Self {
        Self { tx: None }
    }

    pub fn send(&self, msg: JsonMessage) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
        }
    }

    pub fn status(&self, status: impl Into<String>, id: impl Into<String>) {
        self.send(JsonMessage::status(status, id));
    }

    pub fn bytes(&self, status: &str, id: &str, current: u64, total: u64) {
        self.send(JsonMessage::progress(status, id, current, total));
    }

    /// Resolves once nobody reads the messages any more (the client went away); never for a
    /// discarding sink.
    pub async fn closed(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    /// Whether nobody reads the messages any more.
    pub fn is_closed(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.is_closed())
    }

    /// A line of text (`{"stream": …}`), as load and build print.
    pub fn line(&self, text: impl Into<String>) {
        let mut text = text.into();
        text.push('\n');
        self.send(JsonMessage {
            stream: text,
            ..Default::default()
        });
    }
}
