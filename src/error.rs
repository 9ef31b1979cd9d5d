//! The proxy's upstream failures: what went wrong, and which answer that means.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

/// Why sockproxy had to answer a request itself.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// The TCP connect failed (refused, unreachable, name not resolved).
    Unreachable(String),
    /// The TCP connect did not finish in time.
    ConnectTimeout,
    /// Connected, but the exchange failed before a response head arrived.
    NoResponse(String),
    /// The upstream answered 101 to a request that did not ask to upgrade.
    UnexpectedSwitch,
}

impl UpstreamFailure {
    /// Sorts an upstream failure by where it happened.
    pub fn classify(err: &crate::upstream::Failure) -> Self {
        use crate::upstream::Failure;
        match err {
            Failure::Connect(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                UpstreamFailure::ConnectTimeout
            }
            Failure::Connect(e) => UpstreamFailure::Unreachable(describe(e)),
            Failure::Exchange(e) => UpstreamFailure::NoResponse(describe(e)),
        }
    }

    /// The status sockproxy answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamFailure::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `kind` label of `sockproxy_upstream_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamFailure::Unreachable(_) => "connect_failed",
            UpstreamFailure::ConnectTimeout => "connect_timeout",
            UpstreamFailure::NoResponse(_) => "no_response",
            UpstreamFailure::UnexpectedSwitch => "unexpected_switch",
        }
    }

    /// True for the `upstream_unreachable` flag: no connection could be made.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            UpstreamFailure::Unreachable(_) | UpstreamFailure::ConnectTimeout
        )
    }
}

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamFailure::Unreachable(e) => write!(f, "connect failed: {e}"),
            UpstreamFailure::ConnectTimeout => write!(f, "connect timed out"),
            UpstreamFailure::NoResponse(e) => write!(f, "no response: {e}"),
            UpstreamFailure::UnexpectedSwitch => {
                write!(f, "upstream switched protocols without an upgrade request")
            }
        }
    }
}

impl StdError for UpstreamFailure {}

fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

/// The innermost useful message of an error chain ("Connection refused (os error 111)").
fn describe(err: &(dyn StdError + 'static)) -> String {
    let messages: Vec<String> = chain(err).map(|e| e.to_string()).collect();
    messages.join(": ")
}
