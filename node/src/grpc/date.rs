//! The `date` header of every response, read from the node's clock seam.
//! hyper stamps a response that has none with the system clock, which the
//! simulation does not drive: as the real second turned, HPACK encoded the
//! header in a different number of bytes, and one seed in six ran
//! differently from one process to the next.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tonic::body::Body;
use tonic::codegen::http::{header::DATE, HeaderValue, Response};
use tower::util::MapResponseLayer;

use crate::clock::Clock;

/// A layer that sets `date` on each response from `clock`.
pub fn date_header(
    clock: Arc<dyn Clock>,
) -> MapResponseLayer<impl Fn(Response<Body>) -> Response<Body> + Clone + Send + Sync> {
    MapResponseLayer::new(move |mut response: Response<Body>| {
        let now = UNIX_EPOCH + Duration::from_millis(clock.now_ms());
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
            response.headers_mut().insert(DATE, value);
        }
        response
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, Layer, ServiceExt};

    use super::*;

    struct At(u64);

    impl Clock for At {
        fn now_ms(&self) -> u64 {
            self.0
        }
    }

    #[tokio::test]
    async fn a_response_is_dated_by_the_clock_seam() {
        let respond = service_fn(|()| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
        let dated = date_header(Arc::new(At(1_796_000_000_250))).layer(respond);
        let response = dated.oneshot(()).await.unwrap_or_else(|e| match e {});
        assert_eq!(response.headers()[DATE], "Mon, 30 Nov 2026 00:53:20 GMT");
    }
}
