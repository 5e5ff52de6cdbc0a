//! Streaming consume: a fetch with `Accept: text/event-stream` follows the partition as
//! Server-Sent Events.
//!
//! - `event: records`, `id: <next offset>`, `data:` the same JSON as a fetch answer;
//! - a reconnecting client sends `Last-Event-ID` and resumes exactly after what it saw;
//! - comment lines keep an idle connection alive;
//! - a failure ends the stream with `event: error` and the usual `{"error_code","message"}`;
//! - before each read the caller is checked again (its token still valid, its ACLs still
//!   allowing the read: a revoked caller's stream ends with `event: error`), and its fetch
//!   quota paces the stream: events' bytes are charged, and a caller in debt waits.

use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use floe_api::Encoding;
use floe_broker::{FetchRequest, FetchResult};
use futures::stream::{self, Stream, StreamExt};
use tracing::Instrument;

use super::AppState;
use super::records::{json_fetch, owner_ref, reserve_answer};
use crate::error::ApiError;

/// How long one step of the stream waits at the tail before looping (the keep-alive
/// comments are sent independently).
const TAIL_WAIT: Duration = Duration::from_secs(30);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Who follows the stream, to check again and charge as it goes.
#[derive(Debug, Clone, Default)]
pub(super) struct Caller {
    pub principal: Option<crate::auth::Principal>,
    pub credential: Option<crate::auth::Credential>,
}

/// Streams `first` and then every later fetch from where it ended.
pub(super) fn events(
    state: AppState,
    request: FetchRequest,
    encoding: Encoding,
    first: FetchResult,
    slot: Option<super::waiting::WaitSlot>,
    caller: Caller,
) -> Response {
    let mut stopping = state.stopping.clone();
    let stopped = async move {
        // Ends the stream when the server stops (or its signal is gone).
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    // The stream holds its waiting slot until it ends.
    let stream = follow(state, request, encoding, first, caller)
        .take_until(stopped)
        .map(move |event| {
            let _held = &slot;
            event
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

enum Step {
    /// Hand over this fetch's records, then fetch from its end.
    Send(FetchResult, FetchRequest),
    Fetch(FetchRequest),
    Done,
}

fn follow(
    state: AppState,
    request: FetchRequest,
    encoding: Encoding,
    first: FetchResult,
    caller: Caller,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    // The stream is polled after the request's handler returned: its fetches stay in the
    // request's trace.
    let span = tracing::Span::current();
    stream::unfold(Step::Send(first, request), move |step| {
        let state = state.clone();
        let caller = caller.clone();
        let span = span.clone();
        async move {
            if let (Step::Fetch(_), Some(principal)) = (&step, &caller.principal) {
                let brokers = state.broker.sequencer().membership().members().len();
                while let Some(wait) = state.quotas.fetch_wait(&principal.0, brokers) {
                    tokio::time::sleep(wait).await;
                }
            }
            // The records read, and their encoding, are reserved from the request budget
            // until this step's event is built.
            let (result, mut request, _reserved) = match step {
                Step::Done => return None,
                Step::Send(result, request) => (result, request, None),
                Step::Fetch(request) => {
                    let fetched = state
                        .broker
                        .fetch_within(request.clone(), &state.budget)
                        .await
                        .map_err(ApiError::from)
                        .and_then(|(mut result, reservation)| {
                            reserve_answer(&state, &mut result, reservation, encoding, false)
                                .map(|reserved| (result, reserved))
                        });
                    match fetched {
                        Ok((result, reserved)) => (result, request, reserved),
                        Err(error) => return Some((Some(error_event(&error)), Step::Done)),
                    }
                }
            };
            request.offset = result.next_offset;
            request.wait = TAIL_WAIT;
            // A stream never clamps twice: after the start it follows offsets it was given.
            request.clamp = false;
            if result.records.is_empty() {
                return Some((None, Step::Fetch(request)));
            }
            // Checked again before every event: a caller whose token or ACL was revoked
            // while the stream waited gets no more records.
            if let Some(principal) = &caller.principal
                && state.auth.enabled()
                && let Err(error) = state
                    .auth
                    .may_still_read(principal, caller.credential.as_ref(), &request.topic)
                    .await
            {
                return Some((Some(error_event(&error)), Step::Done));
            }
            let next = result.next_offset;
            let owner = owner_ref(&state, result.owner.as_deref());
            let event = json_fetch(result, encoding, owner).and_then(|body| {
                let bytes = serde_json::to_vec(&body).map_or(0, |encoded| encoded.len());
                Event::default()
                    .event("records")
                    .id(next.to_string())
                    .json_data(body)
                    .map(|event| (event, bytes))
                    .map_err(|error| {
                        ApiError::new(
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            format!("encoding an event: {error}"),
                        )
                    })
            });
            Some(match event {
                Ok((event, bytes)) => {
                    if let Some(principal) = &caller.principal {
                        state.quotas.charge_fetch(&principal.0, bytes);
                    }
                    (Some(event), Step::Fetch(request))
                }
                Err(error) => (Some(error_event(&error)), Step::Done),
            })
        }
        .instrument(span)
    })
    .filter_map(|event| async move { event.map(Ok) })
}

fn error_event(error: &ApiError) -> Event {
    let body = serde_json::to_string(&error.body()).unwrap_or_else(|_| {
        r#"{"error_code":"internal","message":"unencodable error"}"#.to_owned()
    });
    Event::default().event("error").data(body)
}
