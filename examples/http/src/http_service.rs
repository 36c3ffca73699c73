//! The one HTTP service of the HTTP comparison (the `http_server`
//! example's, `#[path]`-included by `benches/http`'s `tokio_http`, so both serve
//! exactly the same): `GET /` answers `hello from cellio`, `POST /echo` the
//! request's body, anything else is 404. A connection makes one
//! [`Echoes`] and answers each of its requests with [`Echoes::handle`].
//!
//! `/echo` holds a body whole before it answers, so what it holds is
//! bounded per connection: the echoes of one connection together hold at
//! most [`MAX_ECHO_BODY`] (16 MiB), and a body that would take them over
//! is refused with 413 Payload Too Large as soon as it does, whatever
//! length the client declared. Over HTTP/1.1 that is one body (a
//! connection's requests come one at a time); over HTTP/2 the streams of
//! one connection (up to 200 at once, hyper's `max_concurrent_streams`)
//! share it. An answer's bytes count until hyper takes them to send, which
//! it does as the client's flow-control window lets it: a client that
//! does not read its answers keeps them counted. What hyper holds comes on
//! top: over HTTP/2 up to its send buffer per stream (400 KiB,
//! `max_send_buf_size`) and the connection's receive window (1 MiB), so
//! one HTTP/2 connection makes the server hold at most about 16 MiB +
//! 200 × 400 KiB + 1 MiB (about 100 MiB) for its echoes, where each of its
//! streams could hold a 16 MiB body and its answer (6 GiB in all).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};

/// The most one connection's echo bodies hold at once.
pub const MAX_ECHO_BODY: usize = 16 << 20;

/// What `handle` fails with: a request body's error (hyper's: the
/// connection failed).
type Error = Box<dyn std::error::Error + Send + Sync>;

/// One connection's echoes: the bytes their bodies hold, shared by its
/// requests (over HTTP/2 its streams, each a task of its own).
#[derive(Clone, Debug, Default)]
pub struct Echoes(Arc<AtomicUsize>);

impl Echoes {
    /// Answers one request of the connection.
    pub fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Answer>, Error>> + Send + 'static {
        let echoes = (request.method() == Method::POST && request.uri().path() == "/echo")
            .then(|| self.clone());
        async move {
            let response = match echoes {
                Some(echoes) => match echoes.collect(request.into_body()).await? {
                    Some(body) => Response::new(body),
                    None => status(StatusCode::PAYLOAD_TOO_LARGE, b"payload too large\n"),
                },
                None if request.method() == Method::GET && request.uri().path() == "/" => {
                    Response::new(Answer::text(b"hello from cellio\n"))
                }
                None => status(StatusCode::NOT_FOUND, b"not found\n"),
            };
            Ok(response)
        }
    }

    /// `body` whole, as an answer counted among the connection's echoes;
    /// `None` as soon as it would take them over [`MAX_ECHO_BODY`].
    async fn collect(self, mut body: Incoming) -> Result<Option<Answer>, Error> {
        let mut answer = Answer {
            first: None,
            rest: VecDeque::new(),
            remaining: 0,
            echoes: Some(self),
        };
        while let Some(frame) = body.frame().await {
            // Trailers, and empty data, are no bytes to echo.
            let Some(data) = frame?.into_data().ok().filter(|data| !data.is_empty()) else {
                continue;
            };
            let (n, held) = (data.len(), &answer.echoes.as_ref().expect("an echo").0);
            if held.fetch_add(n, Ordering::Relaxed) + n > MAX_ECHO_BODY {
                held.fetch_sub(n, Ordering::Relaxed);
                return Ok(None); // `answer` gives back what it counted
            }
            answer.remaining += n;
            answer.rest.push_back(data);
        }
        Ok(Some(answer))
    }
}

/// A response's body: a short text, or an echo's bytes in the pieces they
/// came in, each given back to its connection's [`Echoes`] as hyper takes
/// it to send (the rest when dropped).
#[derive(Debug)]
pub struct Answer {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
    /// Bytes not yet taken.
    remaining: usize,
    /// Whose count they are in (an echo's).
    echoes: Option<Echoes>,
}

impl Answer {
    fn text(body: &'static [u8]) -> Answer {
        Answer {
            first: Some(Bytes::from_static(body)),
            rest: VecDeque::new(),
            remaining: body.len(),
            echoes: None,
        }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some(piece) = this.first.take().or_else(|| this.rest.pop_front()) else {
            return Poll::Ready(None);
        };
        this.remaining -= piece.len();
        if let Some(echoes) = &this.echoes {
            echoes.0.fetch_sub(piece.len(), Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining as u64)
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(echoes) = &self.echoes {
            echoes.0.fetch_sub(self.remaining, Ordering::Relaxed);
        }
    }
}

/// A response with `status` and a short text `body`.
fn status(status: StatusCode, body: &'static [u8]) -> Response<Answer> {
    let mut response = Response::new(Answer::text(body));
    *response.status_mut() = status;
    response
}
