//! The websocket side of a probe session: sending engine.io packets as text frames,
//! reading the next one, and holding the session open like a browser tab.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::target::Eio;

/// The websocket of a session, over the upgraded HTTP connection.
pub type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How a websocket read or write ended early.
pub enum WsEnd {
    /// The connection ended without a close frame.
    Cut,
    /// The server sent a close frame.
    Closed { code: Option<u16>, reason: String },
}

pub async fn send(ws: &mut Ws, text: &str) -> Result<(), WsEnd> {
    ws.send(Message::text(text)).await.map_err(|_| WsEnd::Cut)
}

/// The next text frame (pings, pongs and binary frames are skipped).
pub async fn next_text(ws: &mut Ws) -> Result<String, WsEnd> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Err(WsEnd::Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame
                        .map(|f| f.reason.as_str().to_string())
                        .unwrap_or_default(),
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(WsEnd::Cut),
        }
    }
}

/// `--hold`: keeps the session alive like a browser tab (answers v4 pings, sends v3
/// pings) until `hold` has passed.
pub async fn hold_open(ws: &mut Ws, eio: Eio, hold: Duration) -> Result<String, WsEnd> {
    let end = tokio::time::Instant::now() + hold;
    let mut pings = 0u32;
    // v3 clients ping; 25 s is socket.io 2's default pingInterval.
    let mut v3_ping = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(25),
        Duration::from_secs(25),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => {
                return Ok(format!("open for {} s, {pings} pings", hold.as_secs_f64()));
            }
            _ = v3_ping.tick(), if eio == Eio::V3 => {
                send(ws, "2").await?;
                pings += 1;
            }
            got = next_text(ws) => {
                if got? == "2" && eio == Eio::V4 {
                    send(ws, "3").await?;
                    pings += 1;
                }
            }
        }
    }
}
