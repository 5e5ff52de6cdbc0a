//! Reading a Server-Sent Events answer: the streaming consume.

use bytes::{Buf, BytesMut};
use reqwest::Response;

use crate::client::ClientError;
use floe_api::{ErrorBody, FetchResponse};

/// The events of a streaming fetch, read as they arrive.
#[derive(Debug)]
pub struct EventStream {
    response: Response,
    buffer: BytesMut,
    last_event_id: Option<String>,
    done: bool,
}

impl EventStream {
    pub(crate) fn new(response: Response) -> Self {
        Self {
            response,
            buffer: BytesMut::new(),
            last_event_id: None,
            done: false,
        }
    }

    /// The id of the last event received: the offset to resume from (`Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The next `records` event; `None` once the server ends the stream. An `error` event
    /// is returned as [`ClientError::Stream`] and ends the stream.
    pub async fn next(&mut self) -> Option<Result<FetchResponse, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.take_event() {
                match event.kind.as_deref() {
                    Some("records") | None => {
                        if let Some(id) = event.id {
                            self.last_event_id = Some(id);
                        }
                        return Some(
                            serde_json::from_str(&event.data)
                                .map_err(|error| ClientError::Decode(error.to_string())),
                        );
                    }
                    Some("error") => {
                        self.done = true;
                        let body =
                            serde_json::from_str::<ErrorBody>(&event.data).unwrap_or_else(|_| {
                                ErrorBody {
                                    error_code: "stream_error".into(),
                                    message: event.data.clone(),
                                    ..ErrorBody::default()
                                }
                            });
                        return Some(Err(ClientError::Stream(body)));
                    }
                    Some(_) => continue,
                }
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(error.into()));
                }
            }
        }
    }

    /// Cuts one complete event (ended by a blank line) out of the buffer, skipping blocks
    /// that are only comments (keep-alives).
    fn take_event(&mut self) -> Option<Event> {
        loop {
            let text = std::str::from_utf8(&self.buffer).ok()?;
            let normalized_end = text.find("\n\n").map(|at| (at, 2));
            let crlf_end = text.find("\r\n\r\n").map(|at| (at, 4));
            let (at, width) = match (normalized_end, crlf_end) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            };
            let block = text[..at].to_owned();
            self.buffer.advance(at + width);
            let mut event = Event::default();
            let mut data: Vec<&str> = Vec::new();
            let mut any = false;
            for line in block.lines() {
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                any = true;
                match field {
                    "event" => event.kind = Some(value.to_owned()),
                    "data" => data.push(value),
                    "id" => event.id = Some(value.to_owned()),
                    _ => {}
                }
            }
            if any {
                event.data = data.join("\n");
                return Some(event);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Event {
    kind: Option<String>,
    id: Option<String>,
    data: String,
}
