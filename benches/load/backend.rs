//! The upstream every contender forwards to: an engine.io-shaped hyper server that answers
//! polling GETs with a short body and echoes websocket messages, cheap enough never to be
//! the bottleneck.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The open packet of a polling handshake (engine.io v4), as Theia's server sends it.
const OPEN: &[u8] = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
/// A later poll's answer: one socket.io event message.
const MESSAGE: &[u8] = br#"42["ping",{"t":1}]"#;

/// Serves until the runtime stops: one task per connection, one per websocket.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .with_upgrades()
                .await;
        });
    }
}

async fn answer(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = req.uri().query().unwrap_or("");
    if query.contains("transport=websocket") {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        let accept = derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo(ws).await;
            }
        });
        let mut resp = status(StatusCode::SWITCHING_PROTOCOLS);
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept.parse().unwrap());
        return Ok(resp);
    }
    let body = if query.contains("sid=") {
        MESSAGE
    } else {
        OPEN
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=UTF-8".parse().unwrap(),
    );
    Ok(resp)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

/// Sends every data message back until the peer closes or goes away.
async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            return;
        }
        if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
