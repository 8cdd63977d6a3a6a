//! Counts and times every gRPC request by method and status code, for the
//! metrics page. A unary call is timed to its answer; a stream to its
//! opening (its code is how it opened: a stream that fails later counts
//! under OK).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tower::{Layer, Service};

use crate::histogram::Family;

/// Requests by `(method path, gRPC status code)`.
pub type RequestStats = Family<(String, i32)>;

/// The label of requests past the family's bound.
pub fn request_stats() -> RequestStats {
    Family::new(("other".to_string(), 0))
}

/// Longest method path recorded as itself; longer ones are "other".
const METHOD_BYTES_MAX: usize = 96;

#[derive(Clone)]
pub struct ObserveLayer(pub Arc<RequestStats>);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            stats: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    stats: Arc<RequestStats>,
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = match path.len() <= METHOD_BYTES_MAX {
            true => path.to_string(),
            false => "other".to_string(),
        };
        let started = Instant::now();
        let answer = self.inner.call(request);
        let stats = self.stats.clone();
        Box::pin(async move {
            let answer = answer.await;
            if let Ok(response) = &answer {
                stats.observe((method, status_code(response)), started.elapsed());
            }
            answer
        })
    }
}

/// The `grpc-status` of a response that carries it in its headers (an
/// error answered at once); 0 (OK) when it comes in the trailers.
fn status_code(response: &Response<Body>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// The name of a gRPC status code, as labels show it.
pub fn code_name(code: i32) -> String {
    format!("{:?}", tonic::Code::from_i32(code))
}
