//! The one HTTP service of the HTTP comparison (the `http_server`
//! example's, `#[path]`-included by `benches/http`'s `tokio_http`, so both serve
//! exactly the same): `GET /` answers `hello from cellio`, `POST /echo` the
//! request's body, anything else is 404.
//!
//! `/echo` holds a body whole before it answers, so a body over
//! [`MAX_ECHO_BODY`] (16 MiB) is refused with 413 Payload Too Large, as
//! soon as it goes over, whatever length the client declared: what one
//! client makes the server hold is bounded.

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

/// The largest body `POST /echo` takes.
pub const MAX_ECHO_BODY: usize = 16 << 20;

/// What `handle` fails with: a request body's error other than its length
/// (hyper's: the connection failed).
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Answers one request.
pub async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Error> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => Response::new(Full::new(Bytes::from_static(b"hello from cellio\n"))),
        (&Method::POST, "/echo") => {
            match Limited::new(request.into_body(), MAX_ECHO_BODY)
                .collect()
                .await
            {
                Ok(body) => Response::new(Full::new(body.to_bytes())),
                Err(e) if e.is::<LengthLimitError>() => {
                    status(StatusCode::PAYLOAD_TOO_LARGE, b"payload too large\n")
                }
                Err(e) => return Err(e),
            }
        }
        _ => status(StatusCode::NOT_FOUND, b"not found\n"),
    };
    Ok(response)
}

/// A response with `status` and a short text `body`.
fn status(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response
}
