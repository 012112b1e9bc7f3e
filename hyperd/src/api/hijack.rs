//! Hijacked connections (`/exec/start`, `/attach`, `/execvm`): the server answers
//! `HTTP/1.1 101 UPGRADED` and the socket becomes a raw stream: stdin bytes from the client,
//! and from the server Docker stdcopy frames (8-byte header, then the payload), or raw bytes
//! for a process on a TTY; the server closes its side once the process has closed stdout and
//! stderr (or the client typed the detach keys). What flows is `container::stdio`'s.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;

use crate::error::Error;

/// The request must ask for the upgrade (hyperctl and Docker clients send
/// `Connection: Upgrade` and `Upgrade: tcp`).
pub fn take_upgrade(req: &mut Request) -> Result<OnUpgrade, Error> {
    if !wants_upgrade(req.headers()) {
        return Err(Error::InvalidInput(
            "this endpoint hijacks the connection: send Connection: Upgrade and Upgrade: tcp"
                .into(),
        ));
    }
    Ok(hyper::upgrade::on(req))
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && headers.contains_key(header::UPGRADE)
}

/// `101 UPGRADED`, with the headers hyperd 1.1 writes.
pub fn upgraded() -> Response {
    let mut resp = (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONTENT_TYPE, "application/vnd.docker.raw-stream"),
            (header::CONNECTION, "Upgrade"),
            (header::UPGRADE, "tcp"),
        ],
    )
        .into_response();
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upgrade_requests_are_hijacked() {
        let mut h = HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "tcp".parse().unwrap());
        assert!(wants_upgrade(&h));
        let r = upgraded();
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
}
