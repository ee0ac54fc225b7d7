//! Upgrades (SPEC §4): WebSocket and other HTTP/1.1 `Upgrade` requests pass
//! through to the chosen target. The request is routed and sent like any
//! other, with `Connection: upgrade` and its `Upgrade` put back after the
//! hop-by-hop rewrite; when the target answers 101, the client gets the 101
//! and the two connections are spliced, bytes copied both ways, until
//! either side closes. The splice carries the request's context, so the
//! upgrade is one request in the access log and metrics, logged when it
//! ends with the bytes of both directions. It holds no snapshot-bound
//! state, so reloads leave it alone; on drain it is tracked by
//! [`Tunnels`] and cut at `drain_timeout`.
//!
//! `Upgrade: h2c` is not passed on (figway itself speaks h2c by prior
//! knowledge; an upstream has no business taking over the client's
//! connection in another HTTP version). RFC 8441's extended CONNECT over
//! HTTP/2 is not supported: h2 clients get 405 for CONNECT, as before.

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::context::{ClientUpgrade, Pending, RequestCtx};
use crate::codec::upgraded;
use crate::state::tunnels::Tunnels;
use crate::upstream::client::UpstreamBody;

/// Whether the request asks for an upgrade figway passes through; if so,
/// takes the client connection's upgrade handle out of the request.
pub fn requested(parts: &mut Parts) -> Option<Box<Pending>> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    // Most requests ask for none: a look at the names before the lookup.
    if !crate::headers::has(&parts.headers, &UPGRADE) {
        return None;
    }
    let protocol = parts.headers.get(UPGRADE)?;
    if protocol.as_bytes().eq_ignore_ascii_case(b"h2c") || !names_upgrade(&parts.headers) {
        return None;
    }
    let protocol = protocol.clone();
    let client = match parts.extensions.remove::<OnUpgrade>() {
        Some(hyper) => ClientUpgrade::Hyper(hyper),
        None => ClientUpgrade::Own(parts.extensions.remove::<upgraded::OnUpgrade>()?),
    };
    Some(Box::new(Pending { client, protocol }))
}

/// Whether `Connection` lists the `upgrade` token.
fn names_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    })
}

/// Puts the upgrade headers back on a head the hop-by-hop rewrite cleaned.
fn restore(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

/// The request head as the target gets it.
pub fn restore_request(headers: &mut HeaderMap, pending: &Pending) {
    restore(headers, &pending.protocol);
}

/// The target answered 101: the client gets the target's `Upgrade` back,
/// and a task splices the two connections, taking the request's context
/// with it. `body` is the 101's, which holds the target's connection.
pub fn splice(
    mut ctx: Box<RequestCtx>,
    response: &mut http::response::Parts,
    mut body: UpstreamBody,
) {
    let Some(pending) = ctx.upgrade.take() else {
        return;
    };
    let Pending {
        client,
        protocol: asked,
    } = *pending;
    let Some((upstream, early)) = body.take_switched() else {
        return;
    };
    let protocol = response.headers.get(UPGRADE).cloned().unwrap_or(asked);
    restore(&mut response.headers, &protocol);
    let tunnels = ctx.conn.shared.tunnels.clone();
    let open = tunnels.open();
    tokio::spawn(async move {
        let _open = open;
        match client {
            ClientUpgrade::Hyper(client) => match client.await {
                Ok(client) => {
                    let client = TokioIo::new(client);
                    carry(&mut ctx, client, upstream, early, &tunnels).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
            },
            ClientUpgrade::Own(client) => match client.connection().await {
                Some(client) => carry(&mut ctx, client, upstream, early, &tunnels).await,
                None => tracing::debug!("upgrade did not complete"),
            },
        }
    });
}

/// Copies both ways until either side closes, or the drain cuts the tunnel
/// (then the context's drop logs the cut). `early`: what the target sent
/// right behind its 101, read with it; the client gets it first.
async fn carry(
    ctx: &mut RequestCtx,
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut target: TcpStream,
    early: Bytes,
    tunnels: &Tunnels,
) {
    let copy = async {
        client.write_all(&early).await?;
        let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut target).await?;
        Ok::<_, std::io::Error>((up, down + early.len() as u64))
    };
    tokio::select! {
        copied = copy => {
            // A reset loses the counts (copy_bidirectional keeps them to
            // itself); the tunnel is still logged, with what came before.
            if let Ok((up, down)) = copied {
                ctx.bytes_in += up;
                ctx.bytes_out += down;
            }
            ctx.complete = true;
        }
        _ = tunnels.cut() => {}
    }
}
