//! The answers sockproxy gives itself, as types: a request it will not forward, an
//! upstream that failed, a connection hyper's parser refused. Each says its status,
//! its metric `kind` and whose doing it was; the texts are for people only.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

use crate::upstream::Failure;

/// Whose doing an answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client (nginx, or whoever connected) sent something sockproxy refuses.
    Client,
    /// The upstream (theia) could not be reached or did not answer properly.
    Upstream,
}

/// An exchange sockproxy answered itself instead of theia.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnAnswer {
    /// `CONNECT` is never proxied (405).
    ConnectMethod,
    /// `Transfer-Encoding` names `chunked` more than once (400, RFC 9112 §7).
    ChunkedTwice,
    /// A request target with no path to forward (400).
    BadTarget,
    /// The TCP connect failed (refused, unreachable, name not resolved): 502.
    Unreachable(String),
    /// The TCP connect did not finish within `--connect-timeout`: 504.
    ConnectTimeout,
    /// Connected, but the exchange failed before a response head arrived: 502.
    NoResponse(String),
    /// The upstream answered 101 to a request that did not ask to upgrade: 502.
    UnexpectedSwitch,
}

impl OwnAnswer {
    /// Sorts an upstream failure by where it happened.
    pub(crate) fn from_upstream(err: &Failure) -> Self {
        match err {
            Failure::Connect(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                OwnAnswer::ConnectTimeout
            }
            Failure::Connect(e) => OwnAnswer::Unreachable(describe(e)),
            Failure::Exchange(e) => OwnAnswer::NoResponse(describe(e)),
        }
    }

    /// The status sockproxy answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            OwnAnswer::ConnectMethod => StatusCode::METHOD_NOT_ALLOWED,
            OwnAnswer::ChunkedTwice | OwnAnswer::BadTarget => StatusCode::BAD_REQUEST,
            OwnAnswer::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            OwnAnswer::Unreachable(_) | OwnAnswer::NoResponse(_) | OwnAnswer::UnexpectedSwitch => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The `kind` label of `sockproxy_client_errors_total` or
    /// `sockproxy_upstream_errors_total` (which one: [`OwnAnswer::fault`]).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            OwnAnswer::ConnectMethod => "connect_method",
            OwnAnswer::ChunkedTwice => "bad_transfer_encoding",
            OwnAnswer::BadTarget => "bad_target",
            OwnAnswer::Unreachable(_) => "connect_failed",
            OwnAnswer::ConnectTimeout => "connect_timeout",
            OwnAnswer::NoResponse(_) => "no_response",
            OwnAnswer::UnexpectedSwitch => "unexpected_switch",
        }
    }

    /// Whose doing the answer was.
    pub(crate) fn fault(&self) -> Fault {
        match self {
            OwnAnswer::ConnectMethod | OwnAnswer::ChunkedTwice | OwnAnswer::BadTarget => {
                Fault::Client
            }
            _ => Fault::Upstream,
        }
    }

    /// True for the `upstream_unreachable` flag: no connection could be made.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, OwnAnswer::Unreachable(_) | OwnAnswer::ConnectTimeout)
    }
}

impl fmt::Display for OwnAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnAnswer::ConnectMethod => write!(f, "CONNECT is not proxied"),
            OwnAnswer::ChunkedTwice => {
                write!(f, "Transfer-Encoding applies chunked more than once")
            }
            OwnAnswer::BadTarget => write!(f, "request target cannot be forwarded"),
            OwnAnswer::Unreachable(e) => write!(f, "connect failed: {e}"),
            OwnAnswer::ConnectTimeout => write!(f, "connect timed out"),
            OwnAnswer::NoResponse(e) => write!(f, "no response: {e}"),
            OwnAnswer::UnexpectedSwitch => {
                write!(f, "upstream switched protocols without an upgrade request")
            }
        }
    }
}

/// A client connection that ended with an error of its own making, before anything
/// was forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientRefusal {
    /// A head that does not parse as HTTP/1.x: hyper answered 400 (or, for an HTTP/2
    /// preface, closed without an answer).
    BadRequest,
    /// The request line was too long: hyper answered 414.
    UriTooLong,
    /// The head was over `--max-header-bytes` or `--max-headers`: hyper answered 431.
    HeadTooLarge,
    /// No complete request head within `--header-timeout` on a new connection.
    HeaderTimeout,
    /// A kept-alive connection idle past `--header-timeout` after its requests:
    /// normal life, counted but not recorded.
    IdleTimeout,
}

impl ClientRefusal {
    /// Sorts a connection's error by what hyper did about it: `answered` is the status
    /// of the last response head hyper wrote to the client, if any (the answer it
    /// gave to the request it refused). `None` for an error that is not the client's.
    pub(crate) fn of(e: &hyper::Error, answered: Option<u16>, requests: u64) -> Option<Self> {
        if e.is_timeout() {
            return Some(if requests > 0 {
                ClientRefusal::IdleTimeout
            } else {
                ClientRefusal::HeaderTimeout
            });
        }
        if !(e.is_parse() || e.is_parse_status() || e.is_parse_too_large()) {
            return None;
        }
        Some(match hyper_answer(e, answered) {
            414 => ClientRefusal::UriTooLong,
            431 => ClientRefusal::HeadTooLarge,
            _ if e.is_parse_too_large() => ClientRefusal::HeadTooLarge,
            _ => ClientRefusal::BadRequest,
        })
    }

    /// The `error_kind` of the `client_error` record and the metric's `kind`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            ClientRefusal::BadRequest => "bad_request",
            ClientRefusal::UriTooLong => "uri_too_long",
            ClientRefusal::HeadTooLarge => "head_too_large",
            ClientRefusal::HeaderTimeout => "header_timeout",
            ClientRefusal::IdleTimeout => "idle_timeout",
        }
    }
}

/// The status hyper answered a refused head with, 0 when none: `answered` (the last
/// status written to the client) counts only when it is one of hyper's own answers
/// (400, 414, 431), not the tail of an earlier response still going out, and never for
/// a timeout or an HTTP/2 preface (hyper closes without an answer).
pub(crate) fn hyper_answer(e: &hyper::Error, answered: Option<u16>) -> u16 {
    if e.is_timeout() || e.is_parse_version_h2() {
        return 0;
    }
    answered
        .filter(|s| matches!(s, 400 | 414 | 431))
        .unwrap_or(0)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_answers_say_status_kind_and_fault() {
        let all = [
            (OwnAnswer::ConnectMethod, 405, Fault::Client),
            (OwnAnswer::ChunkedTwice, 400, Fault::Client),
            (OwnAnswer::BadTarget, 400, Fault::Client),
            (
                OwnAnswer::Unreachable("refused".into()),
                502,
                Fault::Upstream,
            ),
            (OwnAnswer::ConnectTimeout, 504, Fault::Upstream),
            (OwnAnswer::NoResponse("closed".into()), 502, Fault::Upstream),
            (OwnAnswer::UnexpectedSwitch, 502, Fault::Upstream),
        ];
        let mut kinds = std::collections::HashSet::new();
        for (answer, status, fault) in all {
            assert_eq!(answer.status().as_u16(), status, "{answer}");
            assert_eq!(answer.fault(), fault, "{answer}");
            assert!(kinds.insert(answer.kind()), "{} twice", answer.kind());
            assert_eq!(
                answer.is_unreachable(),
                matches!(
                    answer,
                    OwnAnswer::Unreachable(_) | OwnAnswer::ConnectTimeout
                )
            );
        }
    }
}
